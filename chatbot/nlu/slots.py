"""Slots read from a customer's message: `orderId`, `email`, `phone` (CONTRACT.md "AI chatbot").

Patterns run on the diacritics-stripped, casefolded text, so "đơn hàng 12345", "don hang 12345" and "Mã đơn 12345"
read alike. Values come back normalised: an order id as its digits (or, after an order word, an alphanumeric code
such as "A1B2C3", upper-cased), an email lower-cased, a phone as its digits with a leading "+" kept."""

from __future__ import annotations

import re

from chatbot.nlu.normalize import fold, strip_diacritics

# "order", its common typos and the Vietnamese "đơn (hàng)" / "mã đơn (hàng)"; then an optional "no." / "number" /
# "id" / "#" / "số" / ":" before the id.
ORDER_WORD = r"(?:orders?|oder|ordr|ordre|ma\s+don(?:\s+hang)?|don(?:\s+hang)?)"
ORDER_LINK = r"(?:\s*(?:no\.?|nr\.?|num(?:ber)?|id|code|#|so|ma|is|:|-)(?=[\s#:\d]|$))*\s*#?\s*"
ORDER_AFTER_WORD = re.compile(rf"\b{ORDER_WORD}{ORDER_LINK}(?P<id>(?=[a-z]*\d)[a-z0-9]{{3,20}})\b")
ORDER_HASH = re.compile(r"(?<![\w&])#\s?(?P<id>\d{3,12})\b")
# "item #2045", "mã sp #2045": a product's number, not an order's
PRODUCT_BEFORE = re.compile(
    r"\b(?:items?|products?|sku|model|style|art|mau|sp|san\s+pham)\s*(?:no\.?|number|code)?\s*$"
)
BARE_ID = re.compile(r"(?<![\w+#.-])#?(?P<id>(?=[a-z]*\d)[a-z0-9]{3,20})\b(?![.-]\d)")

EMAIL = re.compile(r"(?<![\w.+-])[a-z0-9][a-z0-9._%+-]*@[a-z0-9-]+(?:\.[a-z0-9-]+)*\.[a-z]{2,}")

# a run of digits with the separators people type in phone numbers; validated and trimmed group by group below
PHONE_RUN = re.compile(r"(?<![\w+#@.-])(?:\(\s*\+?\d{1,3}\s*\)[\s.-]?|\+)?\d(?:[\s.-]?\d){6,17}(?![\w@])")
GROUP = re.compile(r"\d+")


def extract_slots(text: str, *, expect_order_id: bool = False) -> dict[str, str]:
    """`expect_order_id`: the bot has just asked for an order number, so a bare "12345" or "A1B2C3" is one."""
    stripped = strip_diacritics(fold(text))
    slots: dict[str, str] = {}
    taken: list[tuple[int, int]] = []
    email = EMAIL.search(stripped)
    if email:
        slots["email"] = email.group(0).rstrip(".")
        taken.append(email.span())
    order = _order_id(stripped, taken, expect_order_id=expect_order_id)
    if order:
        slots["orderId"], span = order
        taken.append(span)
    phone = _phone(stripped, taken)
    if phone:
        slots["phone"] = phone
    return slots


def _order_id(text: str, taken: list[tuple[int, int]], *, expect_order_id: bool) -> tuple[str, tuple[int, int]] | None:
    for pattern in (ORDER_AFTER_WORD, ORDER_HASH):
        for match in pattern.finditer(text):
            if pattern is ORDER_HASH and PRODUCT_BEFORE.search(text, 0, match.start()):
                continue
            if not _overlaps(match.span("id"), taken):
                return _order_value(match.group("id")), match.span("id")
    if expect_order_id:
        for match in BARE_ID.finditer(text):
            if not _overlaps(match.span("id"), taken) and _phone_value(match.group(0)) is None:
                return _order_value(match.group("id")), match.span("id")
    return None


def _order_value(raw: str) -> str:
    return raw if raw.isdigit() else raw.upper()


def _phone(text: str, taken: list[tuple[int, int]]) -> str | None:
    for match in PHONE_RUN.finditer(text):
        if _overlaps(match.span(), taken):
            continue
        value = _phone_value(match.group(0))
        if value:
            return value
    return None


def _phone_value(raw: str) -> str | None:
    """With "+", the longest leading groups of digits that make 8 to 15 digits (E.164). Without, a Vietnamese
    number: "0" and 9 or 10 digits, or "84" and 9 digits, the shortest such leading groups ("0912 345 678 2 pairs"
    is 0912345678)."""
    groups = GROUP.findall(raw)
    prefixes = ["".join(groups[:end]) for end in range(1, len(groups) + 1)]
    if raw.lstrip("( ").startswith("+"):
        return next(("+" + d for d in reversed(prefixes) if 8 <= len(d) <= 15), None)
    return next((d for d in prefixes if _vietnamese_number(d)), None)


def _vietnamese_number(digits: str) -> bool:
    return (digits.startswith("0") and len(digits) in (10, 11)) or (digits.startswith("84") and len(digits) == 11)


def _overlaps(span: tuple[int, int], taken: list[tuple[int, int]]) -> bool:
    return any(span[0] < end and start < span[1] for start, end in taken)


NUMBER = re.compile(r"\d{3,}")


def mask_entities(text: str) -> str:
    """The message with its values replaced by what they are, for the classifier: an email -> "emailaddress", a
    phone -> "phonenumber", any other run of 3+ digits -> "000" (an order number's digits say nothing of the
    intent; that there is a number does)."""
    stripped = strip_diacritics(fold(text))
    pieces: list[tuple[int, int, str]] = [(m.start(), m.end(), " emailaddress ") for m in EMAIL.finditer(stripped)]
    for match in PHONE_RUN.finditer(stripped):
        if _phone_value(match.group(0)) and not _overlaps(match.span(), [(s, e) for s, e, _ in pieces]):
            pieces.append((match.start(), match.end(), " phonenumber "))
    out, last = [], 0
    for start, end, word in sorted(pieces):
        out.append(NUMBER.sub("000", stripped[last:start]))
        out.append(word)
        last = end
    out.append(NUMBER.sub("000", stripped[last:]))
    return "".join(out)
