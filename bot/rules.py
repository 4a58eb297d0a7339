"""Rules for nudges and digests as data: defaults in bot/rules.yaml, overrides per org.

`Rules.for_org(settings)` merges an org's `settings` JSON over the defaults; a value that cannot
work (an unknown stage, a negative day count, an unparseable time) raises `RulesError` naming
the key, so a bad override is reported, not silently ignored.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal, InvalidOperation
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

from store.enums import OPEN_STAGES, CollectionRung

RULES_FILE = Path(__file__).with_name("rules.yaml")
LADDER: tuple[str, ...] = tuple(r.value for r in CollectionRung)
# the funnel's open stages, top to bottom
FUNNEL: tuple[str, ...] = ("analysis", "trust", "needs", "value", "commitment", "deposit",
                           "order", "collection")
assert set(FUNNEL) == {s.value for s in OPEN_STAGES}


class RulesError(ValueError):
    """An org setting (or the defaults file) that cannot work; the message names the key."""


@lru_cache(maxsize=1)
def default_settings() -> dict[str, Any]:
    data = yaml.safe_load(RULES_FILE.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise RulesError(f"{RULES_FILE.name}: expected a mapping")
    return data


def _merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _days(raw: Any, key: str) -> int:
    try:
        value = int(raw)
    except (TypeError, ValueError) as exc:
        raise RulesError(f"{key}: {raw!r} is not a whole number of days") from exc
    if value < 0:
        raise RulesError(f"{key}: {value} days is negative")
    return value


def _clock(raw: Any, key: str) -> time:
    try:
        return time.fromisoformat(str(raw))
    except ValueError as exc:
        raise RulesError(f"{key}: {raw!r} is not a time like 09:00") from exc


def _weekdays(raw: Any, key: str) -> frozenset[int]:
    if not isinstance(raw, list) or not all(isinstance(d, int) and 1 <= d <= 7 for d in raw):
        raise RulesError(f"{key}: expected ISO weekdays 1 (Monday) to 7, got {raw!r}")
    return frozenset(raw)


def _per_stage(raw: Any, key: str) -> dict[str, int]:
    if not isinstance(raw, Mapping):
        raise RulesError(f"{key}: expected stage: days pairs")
    unknown = sorted(set(raw) - set(FUNNEL))
    if unknown:
        raise RulesError(f"{key}: unknown stage {unknown[0]!r}; stages are {', '.join(FUNNEL)}")
    return {stage: _days(days, f"{key}.{stage}") for stage, days in raw.items()}


@dataclass(frozen=True)
class Rules:
    working_start: time
    working_end: time
    working_days: frozenset[int]
    holidays: frozenset[date]
    stalled_days: Mapping[str, int]
    stalled_repeat_days: int
    overstay_factor: float
    overstay_min_days: int
    overstay_min_sample: int
    usual_days: Mapping[str, int]
    ageing_buckets: tuple[int, ...]
    ladder_days: tuple[tuple[str, int], ...]
    large_amount: Decimal
    large_steps: int
    group_threshold: int
    group_limit: int
    digest_time: time
    digest_weekdays: frozenset[int]
    digest_stalled_limit: int

    @classmethod
    def for_org(cls, settings: Mapping[str, Any] | None) -> Rules:
        return _parse(_merge(default_settings(), settings or {}))

    # ---- working time ---------------------------------------------------------------------

    def is_working_time(self, now: datetime, tz: str) -> bool:
        local = now.astimezone(zone(tz))
        return (local.isoweekday() in self.working_days
                and local.date() not in self.holidays
                and self.working_start <= local.time().replace(tzinfo=None) < self.working_end)

    # ---- receivables ----------------------------------------------------------------------

    def bucket(self, days_overdue: int) -> int:
        """Index of the ageing bucket (0 = 1–15 days with the defaults)."""
        index = 0
        for i, low in enumerate(self.ageing_buckets):
            if days_overdue >= low:
                index = i
        return index

    def bucket_label(self, index: int) -> str:
        low = self.ageing_buckets[index]
        if index + 1 < len(self.ageing_buckets):
            return f"{low}–{self.ageing_buckets[index + 1] - 1}"
        return f"{low - 1}+"

    @cached_property
    def _ladder_starts(self) -> list[int]:
        return [days for _rung, days in self.ladder_days]

    def rung_due(self, days_overdue: int, amount: Decimal) -> int:
        """Index in LADDER of the highest rung due by now (-1: none yet). Large amounts climb
        `large_steps` rungs ahead of the schedule."""
        due = bisect_right(self._ladder_starts, days_overdue) - 1
        if due >= 0 and amount >= self.large_amount:
            due = min(due + self.large_steps, len(self.ladder_days) - 1)
        return due


def _parse(raw: Mapping[str, Any]) -> Rules:
    hours = raw.get("working_hours") or {}
    if not isinstance(hours, Mapping):
        raise RulesError("working_hours: expected {start: '09:00', end: '18:00'}")
    start = _clock(hours.get("start", "09:00"), "working_hours.start")
    end = _clock(hours.get("end", "18:00"), "working_hours.end")
    if end <= start:
        raise RulesError("working_hours: the end must be after the start")
    holidays: set[date] = set()
    for value in raw.get("holidays") or []:
        try:
            holidays.add(value if isinstance(value, date) else date.fromisoformat(str(value)))
        except ValueError as exc:
            raise RulesError(f"holidays: {value!r} is not a date like 2027-01-01") from exc
    overstay = raw.get("overstay") or {}
    ladder_raw = raw.get("collection_ladder_days") or {}
    if not isinstance(ladder_raw, Mapping):
        raise RulesError("collection_ladder_days: expected rung: days pairs")
    unknown = sorted(set(ladder_raw) - set(LADDER))
    if unknown:
        raise RulesError(f"collection_ladder_days: unknown rung {unknown[0]!r}; "
                         f"rungs are {', '.join(LADDER)}")
    ladder = tuple((rung, _days(ladder_raw[rung], f"collection_ladder_days.{rung}"))
                   for rung in LADDER if rung in ladder_raw)
    if [d for _r, d in ladder] != sorted(d for _r, d in ladder):
        raise RulesError("collection_ladder_days: each rung must come at or after the previous")
    buckets = tuple(_days(b, "ageing_buckets") for b in raw.get("ageing_buckets") or [1])
    if list(buckets) != sorted(set(buckets)) or buckets[0] < 1:
        raise RulesError("ageing_buckets: expected increasing day counts starting at 1 or more")
    try:
        large = Decimal(str(raw.get("collection_large_amount", "500000")))
    except InvalidOperation as exc:
        raise RulesError("collection_large_amount: not an amount") from exc
    try:
        factor = float(overstay.get("factor", 2.0))
    except (TypeError, ValueError) as exc:
        raise RulesError("overstay.factor: not a number") from exc
    stalled = {**dict.fromkeys(FUNNEL, 14),
               **_per_stage(raw.get("stalled_days") or {}, "stalled_days")}
    usual = {**dict.fromkeys(FUNNEL, 21), **_per_stage(raw.get("usual_days") or {}, "usual_days")}
    return Rules(
        working_start=start,
        working_end=end,
        working_days=_weekdays(raw.get("working_days", [1, 2, 3, 4, 5]), "working_days"),
        holidays=frozenset(holidays),
        stalled_days=stalled,
        stalled_repeat_days=max(1, _days(raw.get("stalled_repeat_days", 7),
                                         "stalled_repeat_days")),
        overstay_factor=factor,
        overstay_min_days=_days(overstay.get("min_days", 21), "overstay.min_days"),
        overstay_min_sample=_days(overstay.get("min_sample", 5), "overstay.min_sample"),
        usual_days=usual,
        ageing_buckets=buckets,
        ladder_days=ladder,
        large_amount=large,
        large_steps=_days(raw.get("collection_large_steps", 1), "collection_large_steps"),
        group_threshold=max(1, _days(raw.get("group_threshold", 3), "group_threshold")),
        group_limit=max(1, _days(raw.get("group_limit", 15), "group_limit")),
        digest_time=_clock(raw.get("digest_time", "08:30"), "digest_time"),
        digest_weekdays=_weekdays(raw.get("digest_weekdays", [1, 2, 3, 4, 5]),
                                  "digest_weekdays"),
        digest_stalled_limit=_days(raw.get("digest_stalled_limit", 10), "digest_stalled_limit"),
    )


def zone(name: str | None, fallback: str = "UTC") -> ZoneInfo:
    """A time zone by name; an unknown name falls back (a typo must not stop every nudge)."""
    try:
        return ZoneInfo(name or fallback)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo(fallback)


def local_day_start(day: date, tz: str) -> datetime:
    """Midnight of `day` in `tz`, as an aware datetime."""
    return datetime.combine(day, time(0), zone(tz))


def days_between(earlier: date, later: date) -> int:
    return (later - earlier).days


ONE_DAY = timedelta(days=1)
