"""A campaign's send window (`schedule.sendWindow`): parsing with the field at fault, the account's time zone, and
when the window opens and closes, across time zones, DST changes and excluded days."""

from __future__ import annotations

from datetime import UTC, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

import jsonschema
import pytest
from schemathesis.specs.openapi.converter import to_json_schema

from campaigns.schedule import parse_schedule
from campaigns.schedule_schema import SCHEDULE
from campaigns.send_window import SendWindow, parse_send_window, window_closing, window_opening, window_timezone
from mktx.api.errors import InvalidInput

NEW_YORK = ZoneInfo("America/New_York")
BERLIN = ZoneInfo("Europe/Berlin")
WEEKDAYS_ONLY = (0, 1, 2, 3, 4)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def window(start: str, end: str, days: tuple[int, ...] = ()) -> SendWindow:
    return SendWindow(time.fromisoformat(start), time.fromisoformat(end), days)


def field_refused(value: Any) -> str:
    with pytest.raises(InvalidInput) as refused:
        parse_send_window(value)
    return str(refused.value.details["field"])


# --- parsing --------------------------------------------------------------------------------------------------------


def test_it_reads_a_window_and_answers_it_in_the_wire_shape():
    parsed = parse_send_window({"start": "09:00", "end": "21:00", "days": ["friday", "monday"]})
    assert parsed == SendWindow(time(9), time(21), (0, 4))
    assert parsed is not None
    assert parsed.as_json() == {"start": "09:00", "end": "21:00", "days": ["monday", "friday"]}


def test_a_window_without_days_opens_every_day_and_answers_days_null():
    for value in ({"start": "23:00", "end": "23:59"}, {"start": "23:00", "end": "23:59", "days": None}):
        parsed = parse_send_window(value)
        assert parsed == SendWindow(time(23), time(23, 59), ())
        assert parsed is not None
        assert parsed.as_json() == {"start": "23:00", "end": "23:59", "days": None}


def test_no_window_is_none():
    assert parse_send_window(None) is None


@pytest.mark.parametrize(
    ("value", "field"),
    [
        ("09:00-21:00", "schedule.sendWindow"),
        (["09:00", "21:00"], "schedule.sendWindow"),
        ({"start": "09:00", "end": "21:00", "timezone": "UTC"}, "schedule.sendWindow.timezone"),
        ({"end": "21:00"}, "schedule.sendWindow.start"),
        ({"start": "9:00", "end": "21:00"}, "schedule.sendWindow.start"),
        ({"start": 900, "end": "21:00"}, "schedule.sendWindow.start"),
        ({"start": "09:00"}, "schedule.sendWindow.end"),
        ({"start": "09:00", "end": "24:00"}, "schedule.sendWindow.end"),
        ({"start": "09:00", "end": "21:60"}, "schedule.sendWindow.end"),
        ({"start": "21:00", "end": "09:00"}, "schedule.sendWindow.end"),
        ({"start": "09:00", "end": "21:00", "days": "monday"}, "schedule.sendWindow.days"),
        ({"start": "09:00", "end": "21:00", "days": []}, "schedule.sendWindow.days"),
        ({"start": "09:00", "end": "21:00", "days": ["monday", "tuesday", "funday"]}, "schedule.sendWindow.days[2]"),
        ({"start": "09:00", "end": "21:00", "days": ["monday", "Tuesday"]}, "schedule.sendWindow.days[1]"),
        ({"start": "09:00", "end": "21:00", "days": [0]}, "schedule.sendWindow.days[0]"),
        ({"start": "09:00", "end": "21:00", "days": ["friday", "monday", "friday"]}, "schedule.sendWindow.days[2]"),
    ],
)
def test_it_refuses_a_malformed_window_naming_the_exact_field(value, field):
    assert field_refused(value) == field


def test_it_refuses_a_window_that_starts_when_it_ends():
    assert field_refused({"start": "09:00", "end": "09:00"}) == "schedule.sendWindow.end"
    with pytest.raises(ValueError):
        SendWindow(time(9), time(9))


def test_the_field_prefix_can_be_chosen():
    with pytest.raises(InvalidInput) as refused:
        parse_send_window({"start": "09:00", "end": "08:00"}, field="sendWindow")
    assert refused.value.details["field"] == "sendWindow.end"


# --- in the schedule ------------------------------------------------------------------------------------------------


def test_a_schedule_carries_its_send_window_and_answers_it():
    body = {"startAt": None, "endAt": None, "recurrence": None, "sendWindow": {"start": "09:00", "end": "21:00"}}
    schedule = parse_schedule(body)
    assert schedule.send_window == SendWindow(time(9), time(21))
    assert schedule.as_json() == {**body, "sendWindow": {"start": "09:00", "end": "21:00", "days": None}}
    assert parse_schedule(schedule.as_json()) == schedule


def test_a_recurring_schedule_keeps_its_send_window():
    window_json = {"start": "08:00", "end": "12:00", "days": ["saturday"]}
    schedule = parse_schedule({"recurrence": {"frequency": "weekly"}, "sendWindow": window_json})
    assert schedule.frequency == "weekly"
    assert schedule.send_window == SendWindow(time(8), time(12), (5,))
    assert schedule.as_json()["sendWindow"] == window_json


def test_a_schedule_without_a_window_answers_send_window_null():
    assert parse_schedule({"startAt": None}).as_json()["sendWindow"] is None
    assert parse_schedule(None).send_window is None
    assert parse_schedule({"sendWindow": None}).send_window is None


def test_a_schedule_names_the_window_field_at_fault():
    with pytest.raises(InvalidInput) as refused:
        parse_schedule({"sendWindow": {"start": "09:00", "end": "21:00", "days": ["monday", "someday"]}})
    assert refused.value.details["field"] == "schedule.sendWindow.days[1]"


def test_a_schedule_still_refuses_unknown_keys():
    with pytest.raises(InvalidInput) as refused:
        parse_schedule({"sendwindow": {"start": "09:00", "end": "21:00"}})
    assert refused.value.details["field"] == "schedule.sendwindow"


# --- the documented shape -------------------------------------------------------------------------------------------


def documented_schedule() -> jsonschema.Draft4Validator:
    return jsonschema.Draft4Validator(to_json_schema(SCHEDULE, nullable_keyword="nullable"))


@pytest.mark.parametrize(
    "send_window",
    [None, {"start": "09:00", "end": "21:00"}, {"start": "00:00", "end": "23:59", "days": ["monday", "sunday"]}],
)
def test_the_schema_documents_what_the_parser_accepts(send_window):
    body = {"startAt": None, "sendWindow": send_window}
    parse_schedule(body)
    assert documented_schedule().is_valid(body)
    assert documented_schedule().is_valid(parse_schedule(body).as_json())


@pytest.mark.parametrize(
    "send_window",
    [
        {"start": "9:00", "end": "21:00"},
        {"start": "09:00", "end": "24:00"},
        {"start": "09:00"},
        {"start": "09:00", "end": "21:00", "days": ["funday"]},
        {"start": "09:00", "end": "21:00", "days": ["monday", "monday"]},
        {"start": "09:00", "end": "21:00", "days": []},
        {"start": "09:00", "end": "21:00", "timezone": "UTC"},
    ],
)
def test_the_schema_refuses_what_the_parser_refuses(send_window):
    body = {"sendWindow": send_window}
    with pytest.raises(InvalidInput):
        parse_schedule(body)
    assert not documented_schedule().is_valid(body)


# --- the account's time zone ----------------------------------------------------------------------------------------


def test_the_window_reads_the_business_hours_time_zone_else_utc():
    assert window_timezone({"enabled": True, "timezone": "Asia/Ho_Chi_Minh"}) == ZoneInfo("Asia/Ho_Chi_Minh")
    assert window_timezone({"enabled": False, "timezone": "Europe/Berlin"}) == BERLIN
    assert window_timezone({"enabled": True, "timezone": "Mars/Olympus_Mons"}) == ZoneInfo("UTC")
    assert window_timezone({"enabled": True}) == ZoneInfo("UTC")
    assert window_timezone({}) == ZoneInfo("UTC")
    assert window_timezone(None) == ZoneInfo("UTC")


# --- openings and closings ------------------------------------------------------------------------------------------


def test_inside_the_window_it_is_open_now_until_its_end():
    nine_to_nine = window("09:00", "21:00")
    now = utc(2026, 1, 20, 12, 34, 56)
    assert window_opening(nine_to_nine, UTC, now) == now
    assert window_closing(nine_to_nine, UTC, now) == utc(2026, 1, 20, 21)


def test_the_window_is_open_from_its_start_and_closed_from_its_end():
    nine_to_nine = window("09:00", "21:00")
    assert window_opening(nine_to_nine, UTC, utc(2026, 1, 20, 9)) == utc(2026, 1, 20, 9)
    assert window_closing(nine_to_nine, UTC, utc(2026, 1, 20, 9)) == utc(2026, 1, 20, 21)
    assert window_opening(nine_to_nine, UTC, utc(2026, 1, 20, 21)) == utc(2026, 1, 21, 9)
    assert window_closing(nine_to_nine, UTC, utc(2026, 1, 20, 21)) is None


def test_before_the_start_it_waits_for_today_s_opening():
    nine_to_nine = window("09:00", "21:00")
    now = utc(2026, 1, 20, 8, 59, 59)
    assert window_opening(nine_to_nine, UTC, now) == utc(2026, 1, 20, 9)
    assert window_closing(nine_to_nine, UTC, now) is None


def test_after_the_end_it_waits_for_tomorrow_s_opening():
    assert window_opening(window("09:00", "21:00"), UTC, utc(2026, 1, 20, 22, 15)) == utc(2026, 1, 21, 9)


def test_the_window_is_read_in_the_account_s_time_zone():
    saigon = ZoneInfo("Asia/Ho_Chi_Minh")  # UTC+7, no DST
    nine_to_nine = window("09:00", "21:00")
    assert window_opening(nine_to_nine, saigon, utc(2026, 1, 20, 1)) == utc(2026, 1, 20, 2)  # 08:00 there
    assert window_closing(nine_to_nine, saigon, utc(2026, 1, 20, 13)) == utc(2026, 1, 20, 14)  # 20:00 there
    assert window_opening(nine_to_nine, saigon, utc(2026, 1, 20, 14)) == utc(2026, 1, 21, 2)  # 21:00 there


def test_an_excluded_day_waits_for_the_next_allowed_one():
    weekdays = window("09:00", "17:00", WEEKDAYS_ONLY)
    friday_evening, saturday_noon = utc(2026, 1, 23, 18), utc(2026, 1, 24, 12)
    assert window_opening(weekdays, UTC, friday_evening) == utc(2026, 1, 26, 9)  # monday
    assert window_opening(weekdays, UTC, saturday_noon) == utc(2026, 1, 26, 9)
    assert window_closing(weekdays, UTC, saturday_noon) is None


def test_the_excluded_day_is_the_local_one_not_utc_s():
    # monday 00:30 in UTC is still sunday 19:30 in New York: a weekdays-only window there waits for monday 09:00
    weekdays = window("00:00", "23:59", WEEKDAYS_ONLY)
    assert window_opening(weekdays, NEW_YORK, utc(2026, 1, 26, 0, 30)) == utc(2026, 1, 26, 5)


def test_a_single_day_window_waits_a_week_once_it_has_closed():
    mondays = window("10:00", "11:00", (0,))
    assert window_opening(mondays, UTC, utc(2026, 1, 26, 11)) == utc(2026, 2, 2, 10)


def test_a_window_late_in_the_evening_closes_at_23_59_and_reopens_the_next_night():
    late = window("23:00", "23:59")
    assert window_opening(late, UTC, utc(2026, 1, 20, 23, 30)) == utc(2026, 1, 20, 23, 30)
    assert window_closing(late, UTC, utc(2026, 1, 20, 23, 30)) == utc(2026, 1, 20, 23, 59)
    assert window_opening(late, UTC, utc(2026, 1, 20, 23, 59)) == utc(2026, 1, 21, 23)
    assert window_closing(late, UTC, utc(2026, 1, 20, 23, 59, 30)) is None
    assert window_opening(late, UTC, utc(2026, 1, 21, 0, 10)) == utc(2026, 1, 21, 23)


def test_a_late_window_in_a_zone_west_of_utc_opens_on_the_next_utc_day():
    late = window("23:00", "23:59")
    # 23:00 in New York in January (EST, UTC-5) is 04:00 UTC the next day
    assert window_opening(late, NEW_YORK, utc(2026, 1, 20, 12)) == utc(2026, 1, 21, 4)
    assert window_closing(late, NEW_YORK, utc(2026, 1, 21, 4, 30)) == utc(2026, 1, 21, 4, 59)


# --- DST ------------------------------------------------------------------------------------------------------------


def test_new_york_s_spring_change_moves_the_opening_an_hour_earlier_in_utc():
    weekdays = window("09:00", "17:00", WEEKDAYS_ONLY)
    friday_evening = utc(2025, 3, 7, 23)  # 18:00 EST; clocks go forward on sunday 9 March
    assert window_opening(weekdays, NEW_YORK, friday_evening) == utc(2025, 3, 10, 13)  # monday 09:00 EDT
    assert window_opening(weekdays, NEW_YORK, utc(2025, 3, 7, 13)) == utc(2025, 3, 7, 14)  # friday 09:00 EST
    assert window_closing(weekdays, NEW_YORK, utc(2025, 3, 10, 13)) == utc(2025, 3, 10, 21)  # 17:00 EDT


def test_new_york_s_autumn_change_moves_the_opening_an_hour_later_in_utc():
    every_day = window("09:00", "17:00")
    assert window_opening(every_day, NEW_YORK, utc(2025, 11, 1, 22)) == utc(2025, 11, 2, 14)  # 09:00 EST
    assert window_closing(every_day, NEW_YORK, utc(2025, 11, 1, 20)) == utc(2025, 11, 1, 21)  # 17:00 EDT


def test_a_start_in_the_spring_gap_opens_when_the_clocks_jump():
    # on 9 March 2025 New York's clocks go from 01:59:59 EST to 03:00 EDT (07:00 UTC): 02:30 never shows
    early = window("02:30", "05:00")
    midnight = utc(2025, 3, 9, 5)
    assert window_opening(early, NEW_YORK, midnight) == utc(2025, 3, 9, 7)
    assert window_closing(early, NEW_YORK, utc(2025, 3, 9, 7)) == utc(2025, 3, 9, 9)  # 05:00 EDT
    assert window_closing(early, NEW_YORK, utc(2025, 3, 9, 6, 59, 59)) is None  # 01:59:59 EST


def test_an_end_in_the_spring_gap_closes_when_the_clocks_jump():
    night = window("01:00", "02:30")
    assert window_closing(night, NEW_YORK, utc(2025, 3, 9, 6, 30)) == utc(2025, 3, 9, 7)  # 01:30 EST
    assert window_opening(night, NEW_YORK, utc(2025, 3, 9, 7)) == utc(2025, 3, 10, 5)  # monday 01:00 EDT


def test_a_window_wholly_inside_the_spring_gap_waits_for_the_next_day():
    # Berlin's clocks go from 02:00 CET to 03:00 CEST on 29 March 2026 (01:00 UTC): 02:00-03:00 is empty that day
    gap = window("02:00", "03:00")
    assert window_opening(gap, BERLIN, utc(2026, 3, 28, 23)) == utc(2026, 3, 30, 0)  # monday 02:00 CEST


def test_a_start_in_the_repeated_autumn_hour_opens_at_its_first_showing():
    # on 2 November 2025 New York shows 01:00-01:59 twice: first in EDT (05:00 UTC), then in EST (06:00 UTC)
    night = window("01:30", "03:00")
    assert window_opening(night, NEW_YORK, utc(2025, 11, 2, 4)) == utc(2025, 11, 2, 5, 30)  # 01:30 EDT
    assert window_closing(night, NEW_YORK, utc(2025, 11, 2, 5, 30)) == utc(2025, 11, 2, 8)  # 03:00 EST


def test_a_window_closed_before_the_repeated_hour_does_not_reopen_in_it():
    night = window("00:00", "01:30")
    assert window_closing(night, NEW_YORK, utc(2025, 11, 2, 5)) == utc(2025, 11, 2, 5, 30)  # 01:30 EDT
    repeated = utc(2025, 11, 2, 6, 10)  # 01:10 EST, the second showing
    assert window_closing(night, NEW_YORK, repeated) is None
    assert window_opening(night, NEW_YORK, repeated) == utc(2025, 11, 3, 5)  # monday 00:00 EST


def test_berlin_s_changes_move_the_opening_in_utc():
    nine_to_six = window("09:00", "18:00")
    assert window_opening(nine_to_six, BERLIN, utc(2026, 3, 28, 6)) == utc(2026, 3, 28, 8)  # 09:00 CET
    assert window_opening(nine_to_six, BERLIN, utc(2026, 3, 28, 19)) == utc(2026, 3, 29, 7)  # 09:00 CEST
    assert window_opening(nine_to_six, BERLIN, utc(2026, 10, 24, 19)) == utc(2026, 10, 25, 8)  # 09:00 CET
    assert window_closing(nine_to_six, BERLIN, utc(2026, 10, 25, 12)) == utc(2026, 10, 25, 17)  # 18:00 CET


def test_a_zone_that_changes_at_midnight_opens_when_the_clocks_jump():
    # Chile goes from 00:00 -04 to 01:00 -03 on 7 September 2025 (04:00 UTC): that day has no midnight
    santiago = ZoneInfo("America/Santiago")
    small_hours = window("00:00", "06:00")
    assert window_opening(small_hours, santiago, utc(2025, 9, 7, 2)) == utc(2025, 9, 7, 4)
    assert window_closing(small_hours, santiago, utc(2025, 9, 7, 4)) == utc(2025, 9, 7, 9)  # 06:00 -03


def test_the_answers_are_in_utc_and_a_naive_now_is_refused():
    nine_to_nine = window("09:00", "21:00")
    now = datetime(2026, 1, 20, 12, tzinfo=BERLIN)
    assert window_opening(nine_to_nine, UTC, now).tzinfo == UTC
    assert window_opening(nine_to_nine, UTC, now) == now
    with pytest.raises(ValueError):
        window_opening(nine_to_nine, UTC, datetime(2026, 1, 20, 12))


@pytest.mark.parametrize("value", ["\u00b2\u00b2:00", "\u0660\u0669:\u0660\u0660", "0\uff19:00"])
def test_digits_other_than_ascii_are_refused_not_a_crash(value):
    with pytest.raises(InvalidInput) as refused:
        parse_send_window({"start": value, "end": "23:00"})
    assert refused.value.details["field"] == "schedule.sendWindow.start"
