"""Parsing of what people really type in chat, in English and Chinese.

Every public function is pure: it never reads the wall clock (dates take an injected ``today``)
and never raises anything but :class:`ParseError` for input it cannot read unambiguously. The
error carries a short ``code``; the message shown to the user is the catalog entry
``parse.<code>`` (``dialogs/locales/<lang>/parsing.yaml``), rendered with ``params``.

Decisions worth knowing (all tested):

* Money: ``3,5`` (one comma followed by 1-2 digits, no other separator) is ambiguous (3.5 or
  35) unless a scale word follows (``3,5 млн`` = 3 500 000) or the integer part is ``0``.
  Likewise ``1.500`` (one dot followed by exactly 3 digits, no scale word) is ambiguous
  (1.5 or 1500). ``1,234`` is always thousands; ``1.234,56`` and ``1,234.56`` are both
  1234.56. ``¥`` is CNY. Amounts are rounded half-up to cents.
* Dates: ``12/1`` and ``12-1`` are month/day (``25/12`` is read as day/month since 25 cannot be
  a month); ``1.12`` with dots is ambiguous unless one part is above 12. ``next Friday`` and
  ``下周五`` are the Friday of the next ISO week (Monday-based), so always 7-13 days ahead;
  ``Friday``/``this Friday``/``周五``/``本周五`` are the first Friday on or after today (on or
  before today with ``prefer="past"``). ``next month``/``下个月`` is the 1st of next month,
  ``next week``/``下周`` the Monday of next week, ``next year``/``明年`` January 1st.
  ``月初``/``beginning of the month`` is today if today is the 1st, else the 1st of next month
  (the 1st of this month with ``prefer="past"``).
"""

from __future__ import annotations

import calendar
import difflib
import functools
import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

__all__ = [
    "Money",
    "ParseError",
    "close_matches",
    "normalize_key",
    "parse_choice",
    "parse_date",
    "parse_money",
    "parse_multi_choice",
    "parse_number",
    "parse_rating",
    "parse_yes_no",
]

MAX_INPUT = 200
MONEY_MAX = Decimal(10) ** 15
_CENT = Decimal("0.01")


class ParseError(ValueError):
    """Input that cannot be read unambiguously.

    ``code`` is a short key like ``'money'`` or ``'money_ambiguous'``; the user-facing message is
    the catalog entry ``parse.<code>``. ``params`` holds the values that template needs.
    """

    def __init__(self, code: str, **params: object) -> None:
        super().__init__(code)
        self.code = code
        self.params: dict[str, object] = dict(params)

    def __str__(self) -> str:
        if not self.params:
            return self.code
        inner = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"{self.code} ({inner})"


# --------------------------------------------------------------------------------------------
# Shared helpers
# --------------------------------------------------------------------------------------------


def _norm(text: str) -> str:
    """NFKC (full width to ASCII, ￥ to ¥, ， to ,), casefold, collapse whitespace."""
    s = unicodedata.normalize("NFKC", text).casefold()
    s = unicodedata.normalize("NFKC", s)
    return " ".join(s.split())


def _is_edge_punct(ch: str) -> bool:
    return ch.isspace() or unicodedata.category(ch).startswith("P")


@functools.lru_cache(maxsize=16384)  # option labels and names recur on every turn
def normalize_key(name: str) -> str:
    """A lookup key for names: NFKC, casefold, whitespace collapsed, punctuation at ends gone."""
    s = _norm(name)
    start, end = 0, len(s)
    while start < end and _is_edge_punct(s[start]):
        start += 1
    while end > start and _is_edge_punct(s[end - 1]):
        end -= 1
    return s[start:end]


def _plain(value: Decimal) -> str:
    """A Decimal as plain text without exponent or trailing zeros: 12000, 3.5."""
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text or "0"


def _clean(value: Decimal) -> Decimal:
    """Same value, tidy representation (no exponent, no trailing fractional zeros)."""
    return Decimal(_plain(value))


_TRAIL_PUNCT = re.compile(r"[\s.。!！?？,，;；:：~～]+$")

_CN_DIGITS: dict[str, int] = {
    "零": 0, "〇": 0, "一": 1, "壹": 1, "二": 2, "贰": 2, "貳": 2, "两": 2, "兩": 2,
    "三": 3, "叁": 3, "參": 3, "四": 4, "肆": 4, "五": 5, "伍": 5, "六": 6, "陆": 6,
    "陸": 6, "七": 7, "柒": 7, "八": 8, "捌": 8, "九": 9, "玖": 9,
}  # fmt: skip
_CN_SMALL: dict[str, int] = {"十": 10, "拾": 10, "百": 100, "佰": 100, "千": 1000, "仟": 1000}
_CN_BIG: dict[str, int] = {"万": 10**4, "萬": 10**4, "亿": 10**8, "億": 10**8}
# Latin/Cyrillic scale words: (value, is_big). "k" behaves like 千, the others like 万/亿.
_LATIN_UNITS: dict[str, tuple[int, bool]] = {
    "thousand": (1000, False), "k": (1000, False), "тыс": (1000, False),
    "тыс.": (1000, False), "тысяч": (1000, False), "тысяча": (1000, False),
    "тысячи": (1000, False), "w": (10**4, True), "million": (10**6, True),
    "millions": (10**6, True), "mln": (10**6, True), "mn": (10**6, True), "mm": (10**6, True),
    "m": (10**6, True), "млн": (10**6, True), "млн.": (10**6, True),
    "billion": (10**9, True), "billions": (10**9, True), "bn": (10**9, True),
    "b": (10**9, True), "млрд": (10**9, True), "млрд.": (10**9, True),
}  # fmt: skip

_CN_CHARS = "".join(_CN_DIGITS) + "".join(_CN_SMALL) + "".join(_CN_BIG)
_LATIN_UNIT_RE = "|".join(re.escape(u) for u in sorted(_LATIN_UNITS, key=len, reverse=True))
_TOKEN_RE = re.compile(
    rf"(?P<num>[0-9]+(?:[.,' ][0-9]+)*)"
    rf"|(?P<cn>[{_CN_CHARS}])"
    rf"|(?P<unit>(?:{_LATIN_UNIT_RE})(?![a-zа-яё]))"
    rf"|(?P<sp>\s+)"
)


def _read_digits(raw: str, *, has_scale: bool, code: str) -> Decimal:
    """Read one run of ASCII digits with separators (``1,234.56``, ``12 000``, ``1.234,56``).

    ``code`` is the error family (``money`` or ``number``); ambiguity raises
    ``<code>_ambiguous`` with the two readings.
    """
    seps = [c for c in raw if not c.isdigit()]
    if not seps:
        return Decimal(raw)
    groups = re.split(r"[.,' ]", raw)

    def thousands(parts: Sequence[str]) -> bool:
        return 1 <= len(parts[0]) <= 3 and all(len(p) == 3 for p in parts[1:])

    def ambiguous(first: str, second: str) -> ParseError:
        readings = [_plain(Decimal(first)), _plain(Decimal(second))]
        if code == "money":
            return ParseError("money_ambiguous", kind="number", example=raw, readings=readings)
        return ParseError("number_ambiguous", kind="number", example=raw, readings=readings)

    kinds = set(seps)
    if len(kinds) == 1:
        sep = seps[0]
        if sep in " '" or len(seps) > 1:
            if thousands(groups):
                return Decimal("".join(groups))
            raise ParseError(code)
        head, tail = groups
        if sep == ",":
            if len(tail) == 3 and thousands(groups):
                return Decimal(head + tail)
            if len(tail) in (1, 2):
                if head == "0" or has_scale:
                    return Decimal(f"{head}.{tail}")
                raise ambiguous(f"{head}.{tail}", head + tail)
            raise ParseError(code)
        # a single dot
        if len(tail) == 3 and head != "0" and not has_scale and thousands(groups):
            raise ambiguous(f"{head}.{tail}", head + tail)
        return Decimal(f"{head}.{tail}")
    # Two kinds: the last separator is the decimal mark, the others group thousands.
    dec = seps[-1]
    if dec not in ".," or seps.count(dec) != 1:
        raise ParseError(code)
    group_kinds = set(seps[:-1])
    if len(group_kinds) != 1 or dec in group_kinds:
        raise ParseError(code)
    int_groups, frac = groups[:-1], groups[-1]
    if not thousands(int_groups):
        raise ParseError(code)
    return Decimal("".join(int_groups) + "." + frac)


def _read_amount(s: str, *, code: str) -> Decimal:
    """Read a non-negative amount with optional scale words: ``1.2万``, ``十二万``, ``15k``."""
    raw_tokens: list[tuple[str, str]] = []
    pos = 0
    while pos < len(s):
        m = _TOKEN_RE.match(s, pos)
        if m is None or m.end() == pos:
            raise ParseError(code)
        pos = m.end()
        kind = m.lastgroup or ""
        if kind != "sp":
            raw_tokens.append((kind, m.group()))
    if not raw_tokens:
        raise ParseError(code)

    total = Decimal(0)
    section = Decimal(0)
    current: Decimal | None = None
    current_single = False  # the pending number is one bare digit (三千五, 2万5)
    last_unit = 0
    zero_since_unit = False
    max_big = 0
    for index, (kind, value) in enumerate(raw_tokens):
        if kind == "unit" and index != len(raw_tokens) - 1:
            raise ParseError(code)  # "15k" yes, "15k 3" no
        if kind == "num" or (kind == "cn" and value in _CN_DIGITS):
            if kind == "cn" and _CN_DIGITS[value] == 0:
                zero_since_unit = True
                continue
            if current is not None:
                raise ParseError(code)
            if kind == "num":
                has_scale = index + 1 < len(raw_tokens) and (
                    raw_tokens[index + 1][0] == "unit"
                    or raw_tokens[index + 1][1] in _CN_SMALL
                    or raw_tokens[index + 1][1] in _CN_BIG
                )
                current = _read_digits(value, has_scale=has_scale, code=code)
                current_single = len(value) == 1
            else:
                current = Decimal(_CN_DIGITS[value])
                current_single = True
            continue
        if kind == "cn" and value in _CN_SMALL:
            unit, big = _CN_SMALL[value], False
        elif kind == "cn":
            unit, big = _CN_BIG[value], True
        else:
            unit, big = _LATIN_UNITS[value]
        if not big:
            if current is None and unit != 10:
                raise ParseError(code)
            section += (current if current is not None else Decimal(1)) * unit
        else:
            if current is None and section == 0:
                raise ParseError(code)
            part = section + (current if current is not None else Decimal(0))
            if unit > max_big:
                total = (total + part) * unit
                max_big = unit
            else:
                total += part * unit
            section = Decimal(0)
        current = None
        last_unit = unit
        zero_since_unit = False
    if current is not None:
        if current_single and last_unit >= 100 and not zero_since_unit:
            current = current * last_unit / 10  # 三千五 = 3500, 两万五 = 25000
        section += current
    return total + section


# --------------------------------------------------------------------------------------------
# Money
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Money:
    """An exact, non-negative amount (quantized to cents) in an ISO 4217 currency."""

    amount: Decimal
    currency: str

    def __post_init__(self) -> None:
        if not isinstance(self.amount, Decimal) or not self.amount.is_finite():
            raise ParseError("money")
        if self.amount < 0:
            raise ParseError("money_negative")
        if self.amount > MONEY_MAX:
            raise ParseError("money_too_large", maximum=_MONEY_MAX_TEXT)
        if not re.fullmatch(r"[A-Z]{3}", self.currency):
            raise ParseError("money")
        object.__setattr__(self, "amount", self.amount.quantize(_CENT, rounding=ROUND_HALF_UP))

    def to_json(self) -> dict[str, str]:
        return {"amount": format(self.amount, "f"), "currency": self.currency}

    @classmethod
    def from_json(cls, data: dict[str, str]) -> Money:
        try:
            amount = Decimal(str(data["amount"]))
            currency = str(data["currency"])
        except (KeyError, TypeError, InvalidOperation) as exc:
            raise ParseError("money") from exc
        return cls(amount, currency)


_MONEY_MAX_TEXT = "1,000,000,000,000,000"
_WB = r"(?<![a-zа-яё])"  # no letter right before a word currency
_WE = r"(?![a-zа-яё])"  # ... nor right after
# Ordered: longer / more specific spellings before the ones they contain ("美元" before "元").
_CURRENCIES: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern), code)
    for pattern, code in (
        (r"hk\$", "HKD"),
        (r"us\$", "USD"),
        (r"jp¥", "JPY"),
        (r"人民币|人民幣", "CNY"),
        (r"港币|港幣|港元", "HKD"),
        (r"美元|美金", "USD"),
        (r"欧元|歐元", "EUR"),
        (r"英镑|英鎊", "GBP"),
        (r"日元|日圆|日圓|円", "JPY"),
        (r"卢布|盧布|₽", "RUB"),
        (r"块钱|塊錢|块|塊|元|圆|圓", "CNY"),
        (rf"{_WB}(?:rmb|cny|yuan){_WE}", "CNY"),
        (rf"{_WB}(?:usd|dollars?){_WE}", "USD"),
        (rf"{_WB}(?:eur|euros?){_WE}", "EUR"),
        (rf"{_WB}(?:gbp|pounds?){_WE}", "GBP"),
        (rf"{_WB}hkd{_WE}", "HKD"),
        (rf"{_WB}(?:jpy|yen){_WE}", "JPY"),
        (rf"{_WB}(?:rub|rubles?|roubles?|руб(?:лей|ля|ль|\.)?){_WE}", "RUB"),
        (r"¥", "CNY"),
        (r"\$", "USD"),
        (r"€", "EUR"),
        (r"£", "GBP"),
    )
)
_APPROX_HEAD = re.compile(
    r"^(?:about|approx\.?|approximately|around|roughly|circa|ca\.|~|≈|约|約|大约|大約|大概|差不多)\s*"
)
_APPROX_TAIL = re.compile(r"\s*(?:左右|上下)$")
_NEGATIVE_HEAD = re.compile(r"^[-−–—]|^负|^負|^minus\b")


def parse_money(text: str, *, default_currency: str = "CNY") -> Money:
    """Read an amount of money like ``¥12,000``, ``1.2万``, ``$3.5m`` or ``3,5 млн руб``."""
    s = _norm(text)
    if not s or len(s) > MAX_INPUT:
        raise ParseError("money")
    found: list[str] = []
    for pattern, code in _CURRENCIES:
        if pattern.search(s):
            found.append(code)
            s = pattern.sub(" ", s)
    currencies = list(dict.fromkeys(found))
    if len(currencies) > 1:
        raise ParseError(
            "money_ambiguous", kind="currency", example=text.strip(), readings=currencies
        )
    currency = currencies[0] if currencies else default_currency.strip().upper()
    s = " ".join(s.split())
    s = _TRAIL_PUNCT.sub("", s)
    s = _APPROX_HEAD.sub("", s)
    s = _APPROX_TAIL.sub("", s).strip()
    if _NEGATIVE_HEAD.match(s):
        raise ParseError("money_negative")
    if not s:
        raise ParseError("money")
    amount = _read_amount(s, code="money")
    if amount > MONEY_MAX:
        raise ParseError("money_too_large", maximum=_MONEY_MAX_TEXT)
    return Money(amount, currency)


# --------------------------------------------------------------------------------------------
# Numbers and ratings
# --------------------------------------------------------------------------------------------

_COUNT_TAIL = re.compile(
    r"\s*(?:人|个|個|件|套|台|家|位|名|次|pcs\.?|pc\.?|pieces?|people|persons?|units?|items?)$"
)


def parse_number(
    text: str,
    *,
    minimum: Decimal | None = None,
    maximum: Decimal | None = None,
    integer: bool = False,
) -> Decimal:
    """Read a number: ``1,200``, ``1.2万``, ``3k``, ``五十``, ``约200``, ``about 200 people``."""
    s = _norm(text)
    if not s or len(s) > MAX_INPUT:
        raise ParseError("number")
    s = _TRAIL_PUNCT.sub("", s)
    s = _APPROX_HEAD.sub("", s)
    s = _APPROX_TAIL.sub("", s)
    s = _COUNT_TAIL.sub("", s)
    s = _APPROX_TAIL.sub("", s).strip()
    negative = False
    if m := _NEGATIVE_HEAD.match(s):
        negative = True
        s = s[m.end() :].strip()
    elif s.startswith("+"):
        s = s[1:].strip()
    if not s:
        raise ParseError("number")
    value = _read_amount(s, code="number")
    if negative:
        value = -value
    value = _clean(value)
    if integer and value != value.to_integral_value():
        raise ParseError("number_integer", value=_plain(value))
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise ParseError(
            "number_range",
            minimum=None if minimum is None else _plain(minimum),
            maximum=None if maximum is None else _plain(maximum),
        )
    return value


def _small_int(token: str) -> int | None:
    """``12``, ``十二``, ``两`` → int; anything else → None."""
    if not token:
        return None
    if token.isascii() and token.isdigit():
        return int(token)
    if any(c not in _CN_DIGITS and c not in _CN_SMALL for c in token):
        return None
    try:
        value = _read_amount(token, code="number")
    except ParseError:
        return None
    return int(value) if value == value.to_integral_value() else None


_STARS = "★⭐🌟"
_RATING_RE = re.compile(
    r"^(?P<n>[0-9]+|[一二两三四五六七八九十]+)\s*"
    r"(?:(?:/|out of|of)\s*(?P<of>[0-9]+)|颗星|顆星|星|分|stars?|pts?|points?)?$"
)


def parse_rating(text: str, *, low: int = 1, high: int = 5) -> int:
    """Read a rating from ``low`` to ``high``: ``4``, ``4/5``, ``★★★★``, ``4星``, ``4 stars``."""
    s = _TRAIL_PUNCT.sub("", _norm(text)).strip()
    value: int | None = None
    if s and len(s) <= MAX_INPUT and all(c in _STARS + "☆ \ufe0f" for c in s):
        value = sum(1 for c in s if c in _STARS) or None
    elif m := _RATING_RE.match(s):
        value = _small_int(m.group("n"))
        if m.group("of") is not None and int(m.group("of")) != high:
            value = None
    if value is None or not low <= value <= high:
        raise ParseError("rating", low=low, high=high)
    return value


# --------------------------------------------------------------------------------------------
# Yes / no
# --------------------------------------------------------------------------------------------

_YES = frozenset(
    {
        "y", "yes", "yeah", "yea", "yep", "yup", "ok", "okay", "k", "sure", "true", "of course",
        "yes please", "absolutely", "1", "是", "是的", "对", "对的", "對", "對的", "有", "好",
        "好的", "行", "可以", "嗯", "嗯嗯", "要", "需要", "没问题", "沒問題", "当然", "當然",
        "✓", "✔", "✅", "👍",
    }
)  # fmt: skip
_NO = frozenset(
    {
        "n", "no", "nope", "nah", "false", "no thanks", "2", "否", "不", "不是", "没有", "沒有",
        "无", "無", "不要", "不需要", "不行", "没", "沒", "不用", "不对", "不對", "不可以",
        "✗", "✘", "❌", "👎",
    }
)  # fmt: skip


def parse_yes_no(text: str) -> bool:
    """Read yes/no in English or Chinese; ``1``/``2`` are the console's numbered options."""
    s = _norm(text).replace("\ufe0f", "")
    s = s.strip("".join(c for c in set(s) if _is_edge_punct(c)))
    if s in _YES:
        return True
    if s in _NO:
        return False
    raise ParseError("yes_no")


# --------------------------------------------------------------------------------------------
# Choices
# --------------------------------------------------------------------------------------------

_CHOICE_NUMBER = re.compile(r"^(?:#|no\.?\s*|第)?\s*([0-9]+)\s*(?:个|個|项|項|号|號)?$")
_HAS_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")


def _first_label(option: tuple[str, Sequence[str]]) -> str:
    value, labels = option
    return labels[0] if labels else value


def _pick(
    matches: Sequence[str], options: Sequence[tuple[str, Sequence[str]]], item: str
) -> str | None:
    unique = list(dict.fromkeys(matches))
    if len(unique) == 1:
        return unique[0]
    if len(unique) > 1:
        by_value = {value: _first_label((value, labels)) for value, labels in options}
        raise ParseError("choice_ambiguous", item=item, candidates=[by_value[v] for v in unique])
    return None


def parse_choice(text: str, options: Sequence[tuple[str, Sequence[str]]]) -> str:
    """Pick one option by 1-based number, exact label/value, or a unique prefix of a label.

    ``options`` are ``(value, labels)`` with all display labels in all languages. Tiers, each
    tried only when the previous found nothing: exact label or value; number; label prefix;
    prefix of a word inside a label; substring of a label (2+ characters).
    """
    key = normalize_key(text)
    labels_out = [_first_label(o) for o in options]
    if not key or len(key) > MAX_INPUT:
        raise ParseError("choice", count=len(options), labels=labels_out)
    keyed = [
        (value, [normalize_key(label) for label in (*labels, value)]) for value, labels in options
    ]
    picked = _pick([v for v, ks in keyed if key in ks], options, text)
    if picked is not None:
        return picked
    if m := _CHOICE_NUMBER.match(key):
        index = int(m.group(1))
        if 1 <= index <= len(options):
            return options[index - 1][0]
        raise ParseError("choice", count=len(options), labels=labels_out)
    tiers: tuple[Callable[[str], bool], ...] = (
        lambda k: k.startswith(key),
        lambda k: any(w.startswith(key) for w in re.split(r"[\s&/,()\-]+", k)[1:]),
        lambda k: len(key) >= 2 and key in k,
    )
    for test in tiers:
        picked = _pick([v for v, ks in keyed if any(test(k) for k in ks if k)], options, text)
        if picked is not None:
            return picked
    raise ParseError("choice", count=len(options), labels=labels_out)


_SPLIT_LEVELS: tuple[re.Pattern[str], ...] = (
    re.compile(r"\s*[,，、;；/]\s*"),
    re.compile(r"\s+(?:and|&)\s+|\s*(?:和|及|与|與|以及)\s*"),
    re.compile(r"\s+"),
)


def parse_multi_choice(text: str, options: Sequence[tuple[str, Sequence[str]]]) -> list[str]:
    """Pick several options: ``1, 3``, ``oil、金融``, ``1 2``, ``A and B``; order kept, no dups.

    The whole text is first tried as one label (labels may contain spaces or "and"), then split
    on , ， 、 ; ； /, then on and/&/和/及, then on whitespace, each piece resolved as in
    :func:`parse_choice`.
    """
    labels_out = [_first_label(o) for o in options]
    if len(text) > MAX_INPUT * 5:
        raise ParseError("multi_choice", item=None, count=len(options), labels=labels_out)

    def resolve(part: str, level: int) -> list[str]:
        try:
            return [parse_choice(part, options)]
        except ParseError as exc:
            for depth in range(level, len(_SPLIT_LEVELS)):
                pieces = [p for p in _SPLIT_LEVELS[depth].split(part) if normalize_key(p)]
                if len(pieces) > 1:
                    out: list[str] = []
                    for piece in pieces:
                        out.extend(resolve(piece, depth + 1))
                    return out
            if exc.code == "choice_ambiguous":
                raise
            raise ParseError(
                "multi_choice", item=part.strip(), count=len(options), labels=labels_out
            ) from exc

    parts = [p for p in _SPLIT_LEVELS[0].split(text) if normalize_key(p)]
    if not parts:
        raise ParseError("multi_choice", item=None, count=len(options), labels=labels_out)
    values = resolve(text, 0) if normalize_key(text) else []
    return list(dict.fromkeys(values))


def _is_subsequence(short: str, long: str) -> bool:
    it = iter(long)
    return all(ch in it for ch in short)


def close_matches(text: str, names: Sequence[str], *, limit: int = 5) -> list[str]:
    """Names near ``text`` for "did you mean …", best first.

    Exact key match first; then keys containing each other (either way) or, for Chinese, the
    text's characters in order within the name (``中石油`` → ``中国石油天然气``); then
    ``difflib`` ratio >= 0.6 on normalized keys.
    """
    key = normalize_key(text)
    if not key or limit <= 0:
        return []
    scored: dict[str, tuple[int, float]] = {}
    for name in names:
        other = normalize_key(name)
        if not other:
            continue
        ratio = difflib.SequenceMatcher(None, key, other).ratio()
        if other == key:
            tier = 0
        elif (
            key in other
            or other in key
            or (
                _HAS_CJK.search(key)
                and len(key) >= 2
                and (_is_subsequence(key, other) or _is_subsequence(other, key))
            )
        ):
            tier = 1
        elif ratio >= 0.6:
            tier = 2
        else:
            continue
        best = scored.get(name)
        if best is None or (tier, -ratio) < (best[0], -best[1]):
            scored[name] = (tier, ratio)
    ranked = sorted(scored.items(), key=lambda item: (item[1][0], -item[1][1]))
    return [name for name, _ in ranked[:limit]]


# --------------------------------------------------------------------------------------------
# Dates
# --------------------------------------------------------------------------------------------

_MONTHS: dict[str, int] = {
    "january": 1, "jan": 1, "february": 2, "feb": 2, "march": 3, "mar": 3, "april": 4,
    "apr": 4, "may": 5, "june": 6, "jun": 6, "july": 7, "jul": 7, "august": 8, "aug": 8,
    "september": 9, "sept": 9, "sep": 9, "october": 10, "oct": 10, "november": 11,
    "nov": 11, "december": 12, "dec": 12,
}  # fmt: skip
_WEEKDAYS: dict[str, int] = {
    "monday": 0, "mon": 0, "tuesday": 1, "tue": 1, "tues": 1, "wednesday": 2, "wed": 2,
    "thursday": 3, "thu": 3, "thur": 3, "thurs": 3, "friday": 4, "fri": 4, "saturday": 5,
    "sat": 5, "sunday": 6, "sun": 6,
}  # fmt: skip
_CN_WEEKDAYS: dict[str, int] = {
    "一": 0, "1": 0, "二": 1, "2": 1, "三": 2, "3": 2, "四": 3, "4": 3, "五": 4, "5": 4,
    "六": 5, "6": 5, "日": 6, "天": 6, "7": 6,
}  # fmt: skip
_EN_NUMBERS: dict[str, int] = {
    "a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6,
    "seven": 7, "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12,
}  # fmt: skip
_RELATIVE_DAYS: dict[str, int] = {
    "today": 0, "tonight": 0, "now": 0, "tomorrow": 1, "tmr": 1, "tmrw": 1, "tomorow": 1,
    "day after tomorrow": 2, "the day after tomorrow": 2, "yesterday": -1,
    "day before yesterday": -2, "the day before yesterday": -2,
    "今天": 0, "今日": 0, "今晚": 0, "明天": 1, "明日": 1, "明早": 1, "明晚": 1, "后天": 2,
    "後天": 2, "大后天": 3, "大後天": 3, "昨天": -1, "昨日": -1, "前天": -2, "大前天": -3,
}  # fmt: skip

_MONTH_RE = "|".join(sorted(_MONTHS, key=len, reverse=True))
_WEEKDAY_RE = "|".join(sorted(_WEEKDAYS, key=len, reverse=True))
_ORD = r"(?:st|nd|rd|th)?"
_RE_YMD = re.compile(r"^(\d{4})\s*[-/.]\s*(\d{1,2})\s*[-/.]\s*(\d{1,2})$")
_RE_COMPACT = re.compile(r"^(\d{4})(\d{2})(\d{2})$")
_RE_MD_SLASH = re.compile(r"^(\d{1,2})\s*[/-]\s*(\d{1,2})(?:\s*[/-]\s*(\d{4}|\d{2}))?$")
_RE_DOTTED = re.compile(r"^(\d{1,2})\.(\d{1,2})\.?(?:(\d{4})\.?)?$")
_RE_CN_DATE = re.compile(
    r"^(?:(\d{4})\s*年|(今年|明年|去年|后年|後年)\s*)?\s*"
    r"([0-9一二三四五六七八九十两]{1,3})\s*月(?:份)?\s*([0-9一二三四五六七八九十]{1,3})\s*[日号號]?$"
)
_RE_EN_DMY = re.compile(
    rf"^(?:the\s+)?(\d{{1,2}}){_ORD}(?:\s+of)?\s+({_MONTH_RE})\.?(?:,?\s+(\d{{4}}))?$"
)
_RE_EN_MDY = re.compile(rf"^({_MONTH_RE})\.?\s+(?:the\s+)?(\d{{1,2}}){_ORD}(?:,?\s+(\d{{4}}))?$")
_RE_EN_WEEKDAY = re.compile(rf"^(?:(next|this|coming|last)\s+)?({_WEEKDAY_RE})\.?$")
_RE_EN_WEEKDAY_WEEK = re.compile(rf"^({_WEEKDAY_RE})\.?\s+(next|this|last)\s+week$")
_RE_CN_WEEKDAY = re.compile(
    r"^(下下个|下下個|下下|下个|下個|下|上个|上個|上|本|这个|這個|这|這)?\s*"
    r"(?:周|週|星期|礼拜|禮拜)\s*([一二三四五六日天1-7])$"
)
_RE_EN_IN = re.compile(r"^(?:in|after|within)\s+(\S+)\s+(day|week|month|year)s?(?:\s+time)?$")
_RE_EN_LATER = re.compile(
    r"^(\S+)\s+(day|week|month|year)s?\s+(from now|from today|later|after|ago|before)$"
)
_RE_CN_LATER = re.compile(
    r"^([0-9零〇一二三四五六七八九十两百]+)\s*(?:个|個)?\s*"
    r"(天|日|周|週|星期|礼拜|禮拜|月|年)\s*(之后|以后|后|之後|以後|後|前|之前|以前)$"
)
_RE_LEAD = re.compile(r"^(?:on|by|due|until|till|before)\s+|^(?:在|于|於|到)\s*")

_EN_FIXED = {
    "end of month": "eom", "end of the month": "eom", "end of this month": "eom",
    "month end": "eom", "month-end": "eom", "eom": "eom",
    "end of next month": "eonm", "end of the next month": "eonm",
    "beginning of next month": "bonm", "start of next month": "bonm",
    "beginning of the next month": "bonm", "start of the next month": "bonm",
    "next month": "bonm", "beginning of the month": "bom", "start of the month": "bom",
    "beginning of month": "bom", "start of month": "bom",
    "beginning of this month": "botm", "start of this month": "botm",
    "end of year": "eoy", "end of the year": "eoy", "end of this year": "eoy",
    "year end": "eoy", "year-end": "eoy", "eoy": "eoy",
    "end of next year": "eony", "next year": "bony", "beginning of next year": "bony",
    "start of next year": "bony", "next week": "bonw", "last month": "bolm",
    "月底": "eom", "月末": "eom", "本月底": "eom", "本月末": "eom", "这个月底": "eom",
    "這個月底": "eom", "这月底": "eom", "下月底": "eonm", "下个月底": "eonm",
    "下個月底": "eonm", "下月末": "eonm", "下个月末": "eonm", "月初": "bom", "本月初": "botm",
    "这个月初": "botm", "下月初": "bonm", "下个月初": "bonm", "下個月初": "bonm",
    "下月": "bonm", "下个月": "bonm", "下個月": "bonm", "上个月": "bolm", "上個月": "bolm",
    "上月": "bolm", "年底": "eoy", "年末": "eoy", "今年底": "eoy", "今年年底": "eoy",
    "明年底": "eony", "明年年底": "eony", "明年": "bony", "明年初": "bony", "下周": "bonw",
    "下週": "bonw", "下星期": "bonw", "下个星期": "bonw", "下個星期": "bonw", "下礼拜": "bonw",
    "下个礼拜": "bonw",
}  # fmt: skip


def _valid_date(year: int, month: int, day: int, text: str) -> date:
    try:
        return date(year, month, day)
    except (ValueError, OverflowError) as exc:
        raise ParseError("date_invalid", text=text) from exc


def _add_months(d: date, months: int) -> date:
    index = d.year * 12 + d.month - 1 + months
    year, month = divmod(index, 12)
    month += 1
    return date(year, month, min(d.day, calendar.monthrange(year, month)[1]))


def _month_end(d: date) -> date:
    return d.replace(day=calendar.monthrange(d.year, d.month)[1])


def _month_day(month: int, day: int, today: date, prefer: str, text: str) -> date:
    """The next (``future``) or latest (``past``) valid month/day around ``today``."""
    if not (1 <= month <= 12 and 1 <= day <= 31):
        raise ParseError("date_invalid", text=text)
    step = 1 if prefer == "future" else -1
    for offset in range(9):  # Feb 29 recurs within 8 years
        year = today.year + step * offset
        try:
            candidate = date(year, month, day)
        except ValueError:
            continue
        if (candidate >= today) if prefer == "future" else (candidate <= today):
            return candidate
    raise ParseError("date_invalid", text=text)


def _weekday(target: int, mode: str, today: date, prefer: str) -> date:
    """mode: 'next' (next ISO week), 'next2', 'last' (previous ISO week), 'this'/'' (nearest)."""
    monday = today - timedelta(days=today.weekday())
    if mode == "next":
        return monday + timedelta(days=7 + target)
    if mode == "next2":
        return monday + timedelta(days=14 + target)
    if mode == "last":
        return monday - timedelta(days=7 - target)
    if prefer == "future":
        return today + timedelta(days=(target - today.weekday()) % 7)
    return today - timedelta(days=(today.weekday() - target) % 7)


def _fixed(kind: str, today: date, prefer: str) -> date:
    if kind == "eom":
        return _month_end(today)
    if kind == "eonm":
        return _month_end(_add_months(today.replace(day=1), 1))
    if kind == "bonm":
        return _add_months(today.replace(day=1), 1)
    if kind == "botm":
        return today.replace(day=1)
    if kind == "bolm":
        return _add_months(today.replace(day=1), -1)
    if kind == "bom":
        if today.day == 1 or prefer == "past":
            return today.replace(day=1)
        return _add_months(today.replace(day=1), 1)
    if kind == "eoy":
        return date(today.year, 12, 31)
    if kind == "eony":
        return date(today.year + 1, 12, 31)
    if kind == "bony":
        return date(today.year + 1, 1, 1)
    # "bonw": Monday of next ISO week
    return today - timedelta(days=today.weekday()) + timedelta(days=7)


def _shift(today: date, count: int, unit: str) -> date:
    if unit in ("day", "天", "日"):
        return today + timedelta(days=count)
    if unit in ("week", "周", "週", "星期", "礼拜", "禮拜"):
        return today + timedelta(weeks=count)
    if unit in ("month", "月"):
        return _add_months(today, count)
    return _add_months(today, 12 * count)


def _date_examples(today: date, lang: str) -> list[str]:
    try:
        iso = (today + timedelta(days=14)).isoformat()
    except OverflowError:
        iso = today.isoformat()
    if lang.startswith("zh"):
        return [iso, "12月1日", "下周五"]
    return [iso, "Dec 1", "next Friday"]


def _read_date(s: str, today: date, lang: str, prefer: str) -> date | None:
    if s in _RELATIVE_DAYS:
        return today + timedelta(days=_RELATIVE_DAYS[s])
    if s in _EN_FIXED:
        return _fixed(_EN_FIXED[s], today, prefer)
    if m := (_RE_YMD.match(s) or _RE_COMPACT.match(s)):
        return _valid_date(int(m[1]), int(m[2]), int(m[3]), s)
    if m := _RE_MD_SLASH.match(s):
        first, second = int(m[1]), int(m[2])
        month, day = (second, first) if first > 12 and second <= 12 else (first, second)
        if m[3]:
            year = int(m[3]) + (2000 if len(m[3]) == 2 else 0)
            return _valid_date(year, month, day, s)
        return _month_day(month, day, today, prefer, s)
    if m := _RE_DOTTED.match(s):
        a, b = int(m[1]), int(m[2])
        if a > 12 and b <= 12:
            month, day = b, a
        elif (b > 12 and a <= 12) or a == b:
            month, day = a, b
        elif a <= 12 and b <= 12:
            readings = []
            for mm, dd in ((a, b), (b, a)):
                try:
                    readings.append(
                        date(int(m[3]), mm, dd) if m[3] else _month_day(mm, dd, today, prefer, s)
                    )
                except (ValueError, ParseError):
                    continue
            raise ParseError("date_ambiguous", text=s, readings=[r.isoformat() for r in readings])
        else:
            raise ParseError("date_invalid", text=s)
        if m[3]:
            return _valid_date(int(m[3]), month, day, s)
        return _month_day(month, day, today, prefer, s)
    if m := _RE_CN_DATE.match(s):
        month_n, day_n = _small_int(m[3]), _small_int(m[4])
        if month_n is None or day_n is None:
            return None
        if m[1]:
            return _valid_date(int(m[1]), month_n, day_n, s)
        if m[2]:
            offset = {"今年": 0, "明年": 1, "去年": -1, "后年": 2, "後年": 2}[m[2]]
            return _valid_date(today.year + offset, month_n, day_n, s)
        return _month_day(month_n, day_n, today, prefer, s)
    if m := (_RE_EN_DMY.match(s) or _RE_EN_MDY.match(s)):
        if m.re is _RE_EN_DMY:
            day, month = int(m[1]), _MONTHS[m[2]]
        else:
            month, day = _MONTHS[m[1]], int(m[2])
        if m[3]:
            return _valid_date(int(m[3]), month, day, s)
        return _month_day(month, day, today, prefer, s)
    if m := _RE_EN_WEEKDAY.match(s):
        mode = {"next": "next", "last": "last"}.get(m[1] or "", "this")
        return _weekday(_WEEKDAYS[m[2]], mode, today, prefer)
    if m := _RE_EN_WEEKDAY_WEEK.match(s):
        mode = {"next": "next", "last": "last"}.get(m[2], "this")
        return _weekday(_WEEKDAYS[m[1]], mode, today, prefer)
    if m := _RE_CN_WEEKDAY.match(s):
        prefix = m[1] or ""
        mode = "this"
        if prefix.startswith("下下"):
            mode = "next2"
        elif prefix.startswith("下"):
            mode = "next"
        elif prefix.startswith("上"):
            mode = "last"
        return _weekday(_CN_WEEKDAYS[m[2]], mode, today, prefer)
    if m := (_RE_EN_IN.match(s) or _RE_EN_LATER.match(s)):
        count = _EN_NUMBERS.get(m[1]) if not m[1].isdigit() else int(m[1])
        if count is None:
            return None
        if m.re is _RE_EN_LATER and m[3] in ("ago", "before"):
            count = -count
        return _shift(today, count, m[2])
    if m := _RE_CN_LATER.match(s):
        count = _small_int(m[1])
        if count is None:
            return None
        if "前" in m[3]:
            count = -count
        return _shift(today, count, m[2])
    return None


def _fallback(s: str, today: date, lang: str, prefer: str) -> date | None:
    """Last resort: dateparser (imported lazily, it is slow to import)."""
    if len(s) > 40 or not re.search(r"[^\W\d_]", s):
        return None  # pure numbers ("5") are not dates; long text is not a date
    try:
        import dateparser

        found = dateparser.parse(
            s,
            languages=["en", "zh"],
            settings={
                "RELATIVE_BASE": datetime(today.year, today.month, today.day),
                "PREFER_DATES_FROM": prefer,
                "DATE_ORDER": "YMD" if lang.startswith("zh") else "MDY",
            },
        )
    except Exception:
        return None
    return found.date() if found is not None else None


def parse_date(text: str, *, today: date, lang: str = "en", prefer: str = "future") -> date:
    """Read a calendar date relative to the injected ``today`` (never the wall clock).

    ``prefer`` (``"future"`` or ``"past"``) decides the year of ``12/1`` or ``Dec 1`` and the
    week of a bare weekday. See the module docstring for the rules on ``next Friday`` etc.
    """
    if prefer not in ("future", "past"):
        raise ValueError(f"prefer must be 'future' or 'past', not {prefer!r}")
    s = _TRAIL_PUNCT.sub("", _norm(text))
    s = _RE_LEAD.sub("", s).strip()
    if not s or len(s) > MAX_INPUT:
        raise ParseError("date", examples=_date_examples(today, lang))
    try:
        found = _read_date(s, today, lang, prefer)
    except (ValueError, OverflowError) as exc:
        if isinstance(exc, ParseError):
            raise
        raise ParseError("date", examples=_date_examples(today, lang)) from exc
    if found is None:
        found = _fallback(s, today, lang, prefer)
    if found is None:
        raise ParseError("date", examples=_date_examples(today, lang))
    return found
