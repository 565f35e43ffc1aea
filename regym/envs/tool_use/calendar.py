"""Calendar tools: date arithmetic on ISO dates (proleptic Gregorian, as ``datetime.date``)."""

from __future__ import annotations

import datetime as dt

from regym.envs.tool_use.schema import Tool, ToolError

DATE_PATTERN = r"\d{4}-\d{2}-\d{2}"
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_DATE = {
    "type": "string",
    "pattern": DATE_PATTERN,
    "description": "An ISO date YYYY-MM-DD.",
    "examples": ["2024-03-15"],
}


def parse_date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise ToolError(f"{text!r} is not a valid calendar date (YYYY-MM-DD)") from None


def add_days(date: str, days: int) -> str:
    try:
        return (parse_date(date) + dt.timedelta(days=days)).isoformat()
    except OverflowError:
        raise ToolError("the resulting date is outside years 1..9999") from None


def days_between(start_date: str, end_date: str) -> int:
    return (parse_date(end_date) - parse_date(start_date)).days


def weekday_of(date: str) -> str:
    return WEEKDAYS[parse_date(date).weekday()]


def calendar_tools() -> list[Tool]:
    return [
        Tool(
            name="date_add",
            description="Add a number of days (negative to subtract) to a date. Returns {\"date\": \"YYYY-MM-DD\"}.",
            parameters={
                "type": "object",
                "properties": {
                    "date": _DATE,
                    "days": {"type": "integer", "minimum": -1_000_000, "maximum": 1_000_000},
                },
                "required": ["date", "days"],
                "additionalProperties": False,
            },
            function=lambda date, days: {"date": add_days(date, days)},
        ),
        Tool(
            name="date_diff",
            description="Number of days from start_date to end_date (negative if end is earlier). "
            "Returns {\"days\": integer}.",
            parameters={
                "type": "object",
                "properties": {"start_date": _DATE, "end_date": _DATE},
                "required": ["start_date", "end_date"],
                "additionalProperties": False,
            },
            function=lambda start_date, end_date: {"days": days_between(start_date, end_date)},
        ),
        Tool(
            name="weekday",
            description="The day of the week of a date. Returns {\"weekday\": \"Monday\"...\"Sunday\"}.",
            parameters={
                "type": "object",
                "properties": {"date": _DATE},
                "required": ["date"],
                "additionalProperties": False,
            },
            function=lambda date: {"weekday": weekday_of(date)},
        ),
    ]
