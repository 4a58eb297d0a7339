"""What a column can hold, read from the models: the one source of input limits.

A `String(n)` holds at most n characters, an `Integer` 32 bits, a `Numeric(p, s)` (`Amount`)
less than 10^(p-s); PostgreSQL refuses more (SQLite silently keeps it), and neither text nor
JSONB on PostgreSQL holds a NUL character. The dialog engine, the CSV import and the Slack
forms all ask `limit_for(table, column)` and run the same `clean` + `Limit.check` on what a
user typed, so bad input gets a translated answer (`err.<code>` / `csv.err.<code>`) instead of
an internal error.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import Decimal
from functools import cache
from typing import Any

from sqlalchemy import JSON, Integer, Numeric, String, Text
from sqlalchemy.types import TypeDecorator

from store.models import Base

INT_BOUND = 2 ** 31  # PostgreSQL `integer`: -2^31 .. 2^31-1
# C0 controls, DEL and C1 controls; newline and tab are let through where a field is multi-line
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_LINE_BREAKS = re.compile(r"[ \t]*[\r\n\t\v\f\u2028\u2029]+[ \t]*")


def clean(text: str, *, multiline: bool = True) -> str:
    """`text` without NUL and the other control characters (ESC, BEL, backspace ...).

    Multi-line text keeps its newlines (CR LF and CR become LF) and tabs; single-line text has
    every run of line breaks and tabs folded into one space."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not multiline:
        text = _LINE_BREAKS.sub(" ", text)
    return _CONTROLS.sub("", text)


@dataclass(frozen=True)
class LimitError:
    """Why a value does not fit: `code` names the catalog text (`err.<code>`, and
    `csv.err.<code>` in an import report); `params` fill it in."""

    code: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Limit:
    """What one column holds: text up to `max_length` characters (None: any length), on one
    line unless `multiline`; or numbers of magnitude below `bound`."""

    max_length: int | None = None
    multiline: bool = True
    bound: Decimal | None = None

    def clean(self, text: str) -> str:
        return clean(text, multiline=self.multiline)

    def check(self, value: Any) -> LimitError | None:
        """None if the column can hold `value`, else why not."""
        if isinstance(value, str):
            if _CONTROLS.search(value) or (not self.multiline and _LINE_BREAKS.search(value)):
                return LimitError("control_chars")
            if self.max_length is not None and len(value) > self.max_length:
                return LimitError("too_long", {"length": len(value), "limit": self.max_length})
            return None
        if self.bound is not None and isinstance(value, int | float | Decimal) \
                and not isinstance(value, bool) and abs(Decimal(str(value))) >= self.bound:
            return LimitError("too_large", {"bound": f"{self.bound:,}"})
        return None


ANY_TEXT = Limit()


def _limit(column_type: Any) -> Limit | None:
    if isinstance(column_type, TypeDecorator):
        column_type = column_type.impl_instance
    if isinstance(column_type, Text) or (isinstance(column_type, String)
                                         and column_type.length is None):
        return Limit(multiline=True)
    if isinstance(column_type, String):
        return Limit(max_length=column_type.length, multiline=False)
    if isinstance(column_type, Integer):
        return Limit(bound=Decimal(INT_BOUND))
    if isinstance(column_type, Numeric) and column_type.precision is not None:
        return Limit(bound=Decimal(10) ** (column_type.precision - (column_type.scale or 0)))
    return None


@cache
def limit_for(table: str, column: str) -> Limit | None:
    """The limit of `table.column` from its type in store/models.py; None for columns whose
    values are not typed in (ids, dates, booleans) and for unknown ones. A JSON column holds
    any text except NUL: multi-line text without a length limit."""
    found = Base.metadata.tables.get(table)
    if found is None or column not in found.c:
        return None
    column_type = found.c[column].type
    if isinstance(column_type, JSON):
        return ANY_TEXT
    return _limit(column_type)


__all__ = ["ANY_TEXT", "INT_BOUND", "Limit", "LimitError", "clean", "limit_for"]
