"""The time an editor types for `queue --at`, read as they meant it.

A local time is read in a named zone. One that the zone skips (the hour the
clocks go forward) or repeats (the hour they go back) is refused with the
explicit offsets to choose from, never guessed.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .errors import NewsletterError

# A time this close behind the clock is "now", not the past: the editor typed it a moment ago.
PAST_TOLERANCE = dt.timedelta(minutes=1)


class SendTimeError(NewsletterError):
    """The time cannot be read, or means two times or none; str() says what to write instead."""


@dataclass(frozen=True)
class SendTime:
    typed: str
    zone: str | None  # the zone a local time was read in; None for 'now' or a time with its offset
    moment: dt.datetime  # aware, in the zone or offset it was given in

    @property
    def utc(self) -> dt.datetime:
        """Naive UTC, as the store keeps times."""
        return self.moment.astimezone(dt.UTC).replace(tzinfo=None)

    def is_past(self, now: dt.datetime) -> bool:
        """`now` is naive UTC."""
        return self.utc < now - PAST_TOLERANCE

    def describe(self) -> str:
        """The time as typed, in its zone, and in UTC."""
        utc = f"{self.utc:%Y-%m-%d %H:%M} UTC"
        if self.typed.strip().lower() == "now":
            return f"now ({utc})"
        offset = _offset(self.moment.utcoffset())
        if self.zone:
            return f"{self.typed.strip()} {self.zone} ({self.moment.tzname()}, UTC{offset}) = {utc}"
        return f"{self.typed.strip()} (UTC{offset}) = {utc}"


def _offset(delta: dt.timedelta | None) -> str:
    minutes = int((delta or dt.timedelta()).total_seconds() // 60)
    sign = "-" if minutes < 0 else "+"
    return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise SendTimeError(f"'{name}' is not a time zone; use a name such as Europe/London or UTC") from None


def parse_send_time(when: str, zone: str, now: dt.datetime) -> SendTime:
    """'now', ISO 8601 with an offset, or a local time in `zone`; `now` is naive UTC."""
    if when.strip().lower() == "now":
        return SendTime(when, None, now.replace(tzinfo=dt.UTC))
    try:
        moment = dt.datetime.fromisoformat(when.strip())
    except ValueError:
        raise SendTimeError(
            f"'{when}' is not a time; write 'now', 2017-03-06T09:00+00:00, or 2017-03-06 09:00 with --tz Europe/London"
        ) from None
    if moment.tzinfo is not None:
        return SendTime(when, None, moment)
    tz = _zone(zone)
    first, second = moment.replace(tzinfo=tz, fold=0), moment.replace(tzinfo=tz, fold=1)
    if first.utcoffset() == second.utcoffset():
        return SendTime(when, zone, first)
    wall = f"{moment:%Y-%m-%d %H:%M}"
    choices = " or ".join(f"{moment:%Y-%m-%dT%H:%M}{_offset(m.utcoffset())}" for m in (first, second))
    if first.astimezone(dt.UTC).astimezone(tz).replace(tzinfo=None) != moment:
        raise SendTimeError(
            f"{wall} does not exist in {zone}: the clocks go forward over it that night "
            f"(from UTC{_offset(first.utcoffset())} to UTC{_offset(second.utcoffset())}); "
            f"give a time that exists, or an explicit offset: {choices}"
        )
    raise SendTimeError(
        f"{wall} happens twice in {zone}: the clocks go back over it that night; "
        f"say which with an explicit offset: {choices} "
        f"({first.tzname()} then {second.tzname()})"
    )
