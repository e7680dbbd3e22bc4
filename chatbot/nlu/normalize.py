"""Text forms the engine works on. `folded`: Unicode NFC, casefolded, spaces collapsed. `stripped`: the same without
diacritics ("đơn hàng" -> "don hang"), punctuation kept (the slot patterns read it). `key`: `stripped` as words only,
long letter runs squeezed ("hellooo" -> "helloo") and chat short forms spelled out ("ko" -> "khong", "bn" -> "bao
nhieu", "thx" -> "thanks"), so that a message typed without accents or in texting style meets the catalogue's words.
`accented`: the words of `folded`, for features that keep the Vietnamese accents apart."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

# Chat short forms, token by token on the stripped text. Only unambiguous ones: "r" (are / roi) and "a" (anh / a)
# are left to the model.
SHORT_FORMS = {
    "ko": "khong",
    "k": "khong",
    "kh": "khong",
    "khg": "khong",
    "hok": "khong",
    "hong": "khong",
    "dc": "duoc",
    "dk": "duoc",
    "bn": "bao nhieu",
    "bnh": "bao nhieu",
    "j": "gi",
    "sp": "san pham",
    "mk": "minh",
    "mik": "minh",
    "e": "em",
    "ad": "admin",
    "sdt": "so dien thoai",
    "dt": "dien thoai",
    "ntn": "nhu the nao",
    "mn": "moi nguoi",
    "ib": "inbox",
    "camon": "cam on",
    "u": "you",
    "ur": "your",
    "pls": "please",
    "plz": "please",
    "thx": "thanks",
    "thnx": "thanks",
    "tks": "thanks",
    "thks": "thanks",
    "ty": "thanks",
    "oke": "ok",
    "okie": "ok",
    "okay": "ok",
}

# A few emoji carry the whole message ("👋", "🙏"): read as the word they stand for.
EMOJI_WORDS = {"👋": " hi ", "🙏": " thanks ", "👍": " ok ", "❤️": " thanks ", "😡": " angry ", "🤬": " angry "}

WORD = re.compile(r"[^\W_]+")
REPEATS = re.compile(r"([^\W\d_])\1{2,}")
SPACES = re.compile(r"\s+")


@dataclass(frozen=True)
class Normalized:
    folded: str
    stripped: str
    key: str
    accented: str


def fold(text: str) -> str:
    text = unicodedata.normalize("NFC", text)
    for emoji, word in EMOJI_WORDS.items():
        text = text.replace(emoji, word)
    return SPACES.sub(" ", text.casefold()).strip()


def strip_diacritics(text: str) -> str:
    """Turns "đơn hàng" into "don hang": combining marks dropped after NFD, and the barred d (not a combining mark)."""
    decomposed = unicodedata.normalize("NFD", text)
    bare = "".join(ch for ch in decomposed if unicodedata.category(ch) != "Mn")
    return unicodedata.normalize("NFC", bare.replace("đ", "d").replace("Đ", "D"))


def words(text: str) -> list[str]:
    return WORD.findall(text)


def key_form(stripped: str) -> str:
    squeezed = REPEATS.sub(r"\1\1", stripped)
    return " ".join(SHORT_FORMS.get(token, token) for token in words(squeezed))


@lru_cache(maxsize=4096)
def normalize(text: str) -> Normalized:
    folded = fold(text)
    stripped = strip_diacritics(folded)
    return Normalized(folded=folded, stripped=stripped, key=key_form(stripped), accented=" ".join(words(folded)))


def has_diacritics(text: str) -> bool:
    folded = fold(text)
    return folded != strip_diacritics(folded)
