"""A merchant's FAQ matched to a customer's message, typo-tolerant ("retrun polcy" finds "What is your return
policy?"), on the normalised forms (no diacritics, short forms spelled out) without the function words.

The score (0-1) is the better of two rapidfuzz measures: a token alignment, where each word of one side is paired
with its closest word of the other (`fuzz.ratio`, a pair under `WORD_MIN` counts for nothing), weighing how much of
the question the message covers (`COVERAGE_WEIGHT`) and how much of the message the question explains; and
`fuzz.token_sort_ratio` of the whole texts, for words split or joined differently ("freeship", "free ship"). A word
alone does not match a longer question ("ship" is not "Do you ship internationally?")."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from rapidfuzz import fuzz

from chatbot.nlu.normalize import normalize

FAQ_MATCH_MIN = 0.75
# a match this close is the merchant's own answer to this very question: it stands even where the classifier reads a
# complaint or a request for a person ("Are your products vegan?" is not a complaint when the FAQ asks it)
FAQ_MATCH_STRONG = 0.9
WORD_MIN = 0.75
COVERAGE_WEIGHT = 0.65

# function words of English and Vietnamese (without diacritics), left out of the comparison
STOP_WORDS = frozenset(
    """a an the is are am was were be been being do does did doing i you your yours we our ours me my mine it its
    this that these those what whats how when where which who whom why can could would will should shall may might
    must please to of for in on at by with from and or any some there here have has had having get got about if so
    just really hi hello hey shop admin ok also tell know want like need offer
    la cua cho toi minh em anh chi ban oi a ah nhe nha vay the nao gi co khong duoc thi ma va voi o tai nhu sao hoi
    duoc muon biet xin giup nay do ay ak a ha""".split()  # noqa: SIM905 - a word list reads better as text
)


@dataclass(frozen=True)
class FaqEntry:
    question: str
    answer: str
    intent: str = ""


@dataclass(frozen=True)
class FaqMatch:
    entry: FaqEntry
    score: float


def faq_match(text: str, entries: Sequence[FaqEntry]) -> FaqMatch | None:
    best: FaqMatch | None = None
    for entry in entries:
        score = faq_score(text, entry.question)
        if score >= FAQ_MATCH_MIN and (best is None or score > best.score):
            best = FaqMatch(entry=entry, score=score)
    return best


def faq_ranked(text: str, entries: Sequence[FaqEntry]) -> list[FaqEntry]:
    """The entries, the closest to `text` first (an engine that sees only some sees the relevant ones)."""
    return sorted(entries, key=lambda entry: faq_score(text, entry.question), reverse=True)


def faq_score(text: str, question: str) -> float:
    message, asked = content_words(text), content_words(question)
    if not message or not asked:
        return 0.0
    coverage = _covered(asked, message)
    explained = _covered(message, asked)
    aligned = COVERAGE_WEIGHT * coverage + (1 - COVERAGE_WEIGHT) * explained
    whole = fuzz.token_sort_ratio(" ".join(message), " ".join(asked)) / 100
    return round(max(aligned, whole), 4)


@lru_cache(maxsize=4096)
def content_words(text: str) -> tuple[str, ...]:
    tokens = normalize(text).key.split()
    content = tuple(token for token in tokens if token not in STOP_WORDS)
    return content or tuple(tokens)


def _covered(words: tuple[str, ...], other: tuple[str, ...]) -> float:
    """How much of `words` (by length) finds a close word in `other`."""
    total = sum(len(word) for word in words)
    found = 0.0
    for word in words:
        closest = max(fuzz.ratio(word, candidate) for candidate in other) / 100
        if closest >= WORD_MIN:
            found += len(word) * closest
    return found / total
