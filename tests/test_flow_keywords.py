"""Keyword matching as the triggers and wait_for_reply use it, and the static guard on regex keywords."""

from __future__ import annotations

import time
import unicodedata

import pytest

from automation.keywords import keyword_match, nested_repeat


@pytest.mark.parametrize(
    ("text", "keywords", "match", "expected"),
    [
        ("What is the PRICE?", ["price"], "contains", True),
        ("What is the price?", ["cost", "price"], "contains", True),
        ("What is the price?", ["cost"], "contains", False),
        ("  Yes  ", ["yes"], "exact", True),
        ("yes please", ["yes"], "exact", False),
        ("Order #123 status", ["order"], "startsWith", True),
        ("My order", ["order"], "startsWith", False),
        ("anything at all", [], "contains", True),
        ("Tôi muốn MUA hàng", ["mua"], "contains", True),
        ("ĐƠN HÀNG của tôi đâu", ["đơn hàng"], "startsWith", True),
        ("  Xin Chào  ", ["xin chào"], "exact", True),
        (unicodedata.normalize("NFD", "Giá bao nhiêu?"), ["giá"], "startsWith", True),  # decomposed accents
        ("Giá bao nhiêu?", [unicodedata.normalize("NFD", "giá")], "contains", True),
        ("Gia bao nhieu", ["giá"], "contains", False),  # without its accents it is another word
        ("Giá bao nhiêu?", [r"^gi[aá]\b"], "regex", True),
        ("order 12345", [r"\border\s+\d{5}\b"], "regex", True),
        ("ORDER 1234", [r"\border\s+\d{5}\b"], "regex", False),
        ("hello", ["(unclosed"], "regex", False),  # a pattern that does not compile matches nothing
    ],
)
def test_keyword_match(text, keywords, match, expected):
    assert keyword_match(text, keywords, match) is expected


def test_keyword_match_reads_the_first_4000_characters_only():
    assert keyword_match("x" * 3990 + " price", ["price"], "contains")
    assert not keyword_match("x" * 4000 + " price", ["price"], "contains")
    assert not keyword_match("a" * 10_000 + "!", [r"price$"], "regex")


@pytest.mark.parametrize(
    "pattern", [r"(a+)+", r"(a*)*", r"(a|a)*", r"((ab)+)+", r"(a+){2,}", r"(?:\w+\s?)+$", r"([a-z]+)*"]
)
def test_a_nested_repeat_is_caught(pattern):
    assert nested_repeat(pattern)


@pytest.mark.parametrize(
    "pattern", [r"(abc)+", r"a+b+", r"[a-z]+", r"(?:hi)+", r"\(a+\)+", r"(a+)?", r"[(+]+", r"(ab){3}", r"(?i)hi+"]
)
def test_a_plain_pattern_is_not_caught(pattern):
    assert not nested_repeat(pattern)


def test_a_catastrophic_regex_stops_at_its_time_bound_and_does_not_match():
    # (a+)+$ on "aaa...a!" backtracks 2^n ways: unbounded, this search would not end in our lifetime
    started = time.perf_counter()
    matched = keyword_match("a" * 60 + "!", [r"(a+)+$"], "regex")
    assert matched is False
    assert time.perf_counter() - started < 1.0


def test_regex_keywords_share_one_time_bound_per_dm():
    started = time.perf_counter()
    matched = keyword_match("a" * 60 + "!", [r"(a+)+$", r"(a|aa)+$", r"(a*)*$", "price"], "regex")
    assert matched is False
    assert time.perf_counter() - started < 0.5


def test_a_pattern_the_regex_module_cannot_compile_matches_nothing():
    assert keyword_match("abc", [r"(?V1)[[a]--[b]]"], "regex") is False
