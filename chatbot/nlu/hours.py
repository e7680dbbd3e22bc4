"""The built-in `store_hours` answer from the account's business hours (`PUT /accounts/{id}` `businessHours`): the
days grouped where their hours are the same, in the account's time zone, e.g. "We're open Monday to Friday
09:00-18:00 and Saturday 09:00-12:00 (Asia/Ho_Chi_Minh time)." Hours that are not enabled say nothing: the generic
answer promises no hours of its own."""

from __future__ import annotations

from typing import Any

from mktx.accounts.business_hours import WEEKDAYS, parse_hhmm

DAY_NAMES = {
    "en": ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"),
    "vi": ("Thứ Hai", "Thứ Ba", "Thứ Tư", "Thứ Năm", "Thứ Sáu", "Thứ Bảy", "Chủ Nhật"),
}
CLOSING = {
    "en": "You can write to us here at any time and we'll answer when we're open.",
    "vi": "Bạn cứ nhắn tin cho shop ở đây bất cứ lúc nào, shop sẽ trả lời trong giờ làm việc nhé.",
}


def opening_spans(business_hours: dict[str, Any] | None) -> list[tuple[int, int, str, str]]:
    """(first day, last day, start, end) for each run of consecutive weekdays open with the same hours."""
    if not business_hours or not business_hours.get("enabled"):
        return []
    schedule = business_hours.get("schedule") or {}
    spans: list[tuple[int, int, str, str]] = []
    for index, name in enumerate(WEEKDAYS):
        day = schedule.get(name) or {}
        start, end = str(day.get("start")), str(day.get("end"))
        if not (parse_hhmm(start) and parse_hhmm(end)):
            continue
        if spans and spans[-1][1] == index - 1 and spans[-1][2:] == (start, end):
            spans[-1] = (spans[-1][0], index, start, end)
        else:
            spans.append((index, index, start, end))
    return spans


def hours_sentence(business_hours: dict[str, Any] | None, language: str) -> str | None:
    """The opening hours as a sentence, or None when the account has none to tell."""
    spans = opening_spans(business_hours)
    if not spans:
        return None
    lang = language if language in DAY_NAMES else "en"
    names = DAY_NAMES[lang]
    to, both = ("đến", "và") if lang == "vi" else ("to", "and")
    parts = []
    for first, last, start, end in spans:
        days = names[first]
        if last > first:  # "Monday and Tuesday", "Monday to Friday"
            days = f"{names[first]} {both if last == first + 1 else to} {names[last]}"
        parts.append(f"{days} {start}-{end}")
    zone = (business_hours or {}).get("timezone") or "UTC"
    if lang == "vi":
        listed = ", ".join(parts[:-1]) + (" và " if len(parts) > 1 else "") + parts[-1]
        return f"Shop làm việc {listed} (giờ {zone}). {CLOSING['vi']}"
    listed = ", ".join(parts[:-1]) + (" and " if len(parts) > 1 else "") + parts[-1]
    return f"We're open {listed} ({zone} time). {CLOSING['en']}"
