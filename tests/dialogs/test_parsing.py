"""Tests for dialogs.parsing: what people really type, in English and Chinese."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import jinja2
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from dialogs import parsing
from dialogs.parsing import (
    Money,
    ParseError,
    close_matches,
    normalize_key,
    parse_choice,
    parse_date,
    parse_money,
    parse_multi_choice,
    parse_number,
    parse_rating,
    parse_yes_no,
)

FAST = settings(max_examples=200, deadline=None)
ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "dialogs" / "parsing.py"
LOCALES = ROOT / "dialogs" / "locales"

# Friday 27 November 2026.
TODAY = date(2026, 11, 27)


def _code(call: Callable[[], object]) -> str:
    with pytest.raises(ParseError) as info:
        call()
    return info.value.code


# --------------------------------------------------------------------------------------------
# ParseError and Money
# --------------------------------------------------------------------------------------------


def test_parse_error_keeps_code_and_params() -> None:
    err = ParseError("number_range", minimum="1", maximum="5")
    assert isinstance(err, ValueError)
    assert err.code == "number_range"
    assert err.params == {"minimum": "1", "maximum": "5"}
    assert "number_range" in str(err)


def test_money_json_round_trip() -> None:
    money = Money(Decimal("12000"), "CNY")
    assert money.amount == Decimal("12000.00")
    assert money.to_json() == {"amount": "12000.00", "currency": "CNY"}
    assert Money.from_json(money.to_json()) == money
    assert Money.from_json({"amount": "0.5", "currency": "USD"}).to_json() == {
        "amount": "0.50",
        "currency": "USD",
    }


@pytest.mark.parametrize(
    "data",
    [{"amount": "x", "currency": "CNY"}, {"amount": "1"}, {"amount": "1", "currency": "cny"}],
)
def test_money_from_json_rejects_bad_data(data: dict[str, str]) -> None:
    with pytest.raises(ParseError):
        Money.from_json(data)


def test_money_rejects_negative() -> None:
    assert _code(lambda: Money(Decimal("-1"), "CNY")) == "money_negative"


# --------------------------------------------------------------------------------------------
# Money
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "amount", "currency"),
    [
        ("¥12,000", "12000", "CNY"),
        ("￥12000", "12000", "CNY"),
        ("12000元", "12000", "CNY"),
        ("12,000 RMB", "12000", "CNY"),
        ("CNY 12000", "12000", "CNY"),
        ("人民币1.2万", "12000", "CNY"),
        ("1.2万", "12000", "CNY"),
        ("1.2万元", "12000", "CNY"),
        ("3亿", "300000000", "CNY"),
        ("五万", "50000", "CNY"),
        ("十二万", "120000", "CNY"),
        ("三千五百", "3500", "CNY"),
        ("三千五", "3500", "CNY"),
        ("两万五", "25000", "CNY"),
        ("一百零五", "105", "CNY"),
        ("1千万", "10000000", "CNY"),
        ("3百万", "3000000", "CNY"),
        ("一亿二千万", "120000000", "CNY"),
        ("5块", "5", "CNY"),
        ("15k", "15000", "CNY"),
        ("15K", "15000", "CNY"),
        ("1.5w", "15000", "CNY"),
        ("2W", "20000", "CNY"),
        ("$3.5m", "3500000", "USD"),
        ("3.5 million USD", "3500000", "USD"),
        ("$2bn", "2000000000", "USD"),
        ("$2 billion", "2000000000", "USD"),
        ("€1.234,56", "1234.56", "EUR"),
        ("1 234,56 EUR", "1234.56", "EUR"),
        ("1,234.56", "1234.56", "CNY"),
        ("1,234", "1234", "CNY"),
        ("1,234,567", "1234567", "CNY"),
        ("1.234.567", "1234567", "CNY"),
        ("12000", "12000", "CNY"),
        ("12 000", "12000", "CNY"),
        ("0,5", "0.5", "CNY"),
        ("0.125", "0.13", "CNY"),
        ("HK$500", "500", "HKD"),
        ("HKD 500", "500", "HKD"),
        ("500港币", "500", "HKD"),
        ("500港元", "500", "HKD"),
        ("100美元", "100", "USD"),
        ("100美金", "100", "USD"),
        ("US$100", "100", "USD"),
        ("50欧元", "50", "EUR"),
        ("£20", "20", "GBP"),
        ("20 GBP", "20", "GBP"),
        ("30英镑", "30", "GBP"),
        ("1000 JPY", "1000", "JPY"),
        ("1000日元", "1000", "JPY"),
        ("1000円", "1000", "JPY"),
        ("₽500", "500", "RUB"),
        ("500 рублей", "500", "RUB"),
        ("3,5 млн руб", "3500000", "RUB"),
        ("3,5 млн руб.", "3500000", "RUB"),
        ("１２０００元", "12000", "CNY"),
        ("约1.2万", "12000", "CNY"),
        ("about $15k", "15000", "USD"),
        ("1万左右", "10000", "CNY"),
        ("12000.", "12000", "CNY"),
        ("0", "0", "CNY"),
    ],
)
def test_parse_money(text: str, amount: str, currency: str) -> None:
    assert parse_money(text) == Money(Decimal(amount), currency)


def test_parse_money_default_currency() -> None:
    assert parse_money("15k", default_currency="USD") == Money(Decimal("15000"), "USD")
    assert parse_money("¥15k", default_currency="USD").currency == "CNY"


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("3,5", "money_ambiguous"),
        ("3,50", "money_ambiguous"),
        ("$1.500", "money_ambiguous"),
        ("$5 ¥6", "money_ambiguous"),
        ("100 USD 元", "money_ambiguous"),
        ("-5", "money_negative"),
        ("−500元", "money_negative"),
        ("-$500", "money_negative"),
        ("负5万", "money_negative"),
        ("", "money"),
        ("   ", "money"),
        ("abc", "money"),
        ("¥", "money"),
        ("万", "money"),
        ("12 34", "money"),
        ("1,2345", "money"),
        ("15k 3", "money"),
        ("1e20", "money"),
        ("12 apples", "money"),
        ("x" * 500, "money"),
        ("9" * 17, "money_too_large"),
        ("20000000亿", "money_too_large"),
    ],
)
def test_parse_money_errors(text: str, code: str) -> None:
    assert _code(lambda: parse_money(text)) == code


def test_money_ambiguity_params() -> None:
    with pytest.raises(ParseError) as info:
        parse_money("3,5")
    assert info.value.params["readings"] == ["3.5", "35"]
    assert info.value.params["kind"] == "number"
    with pytest.raises(ParseError) as info:
        parse_money("$5 ¥6")
    assert sorted(info.value.params["readings"]) == ["CNY", "USD"]  # type: ignore[call-overload]
    assert info.value.params["kind"] == "currency"


_CURRENCY_FORMS = {
    "CNY": ("¥", "元"),
    "USD": ("$", " USD"),
    "EUR": ("€", " EUR"),
    "GBP": ("£", " GBP"),
    "HKD": ("HK$", "港币"),
    "JPY": ("JPY ", "円"),
    "RUB": ("₽", " руб"),
}


def _plain(value: Decimal) -> str:
    text = format(value, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


@FAST
@given(
    amount=st.decimals(
        min_value=0, max_value=10**12, places=2, allow_nan=False, allow_infinity=False
    ),
    currency=st.sampled_from(sorted(_CURRENCY_FORMS)),
)
def test_money_round_trips_through_many_renderings(amount: Decimal, currency: str) -> None:
    amount = amount.quantize(Decimal("0.01"))
    expected = Money(amount, currency)
    prefix, suffix = _CURRENCY_FORMS[currency]
    plain = format(amount, "f")
    commas = f"{amount:,.2f}"
    forms = [
        plain,
        commas,
        commas.replace(",", " "),
        prefix + plain,
        prefix + commas,
        commas + suffix,
        f"{currency} {plain}",
        f"{plain} {currency.lower()}",
        _plain(amount / 10000) + "万" + suffix,
        prefix + _plain(amount / 1000) + "k",
    ]
    if amount >= 1000:
        forms.append(prefix + commas.replace(",", "_").replace(".", ",").replace("_", "."))
    if amount % 10000 == 0:
        forms.append(f"{amount / 10000:f}".split(".")[0] + "万")
    for form in forms:
        default = currency if form in (plain, commas, commas.replace(",", " ")) else "CNY"
        if form.endswith("万"):
            default = currency
        assert parse_money(form, default_currency=default) == expected, form


# --------------------------------------------------------------------------------------------
# Dates
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-12-01", date(2026, 12, 1)),
        ("2026/12/1", date(2026, 12, 1)),
        ("2026.12.1", date(2026, 12, 1)),
        ("20261201", date(2026, 12, 1)),
        ("２０２６－１２－０１", date(2026, 12, 1)),
        ("12/1", date(2026, 12, 1)),
        ("12-1", date(2026, 12, 1)),
        ("11/27", date(2026, 11, 27)),
        ("11/26", date(2027, 11, 26)),
        ("25/12", date(2026, 12, 25)),
        ("12/1/2027", date(2027, 12, 1)),
        ("25.12", date(2026, 12, 25)),
        ("25.12.2027", date(2027, 12, 25)),
        ("Dec 1", date(2026, 12, 1)),
        ("dec. 1", date(2026, 12, 1)),
        ("1 December 2026", date(2026, 12, 1)),
        ("December 1st", date(2026, 12, 1)),
        ("December 1, 2027", date(2027, 12, 1)),
        ("the 3rd of January", date(2027, 1, 3)),
        ("on Dec 1.", date(2026, 12, 1)),
        ("2026年12月1日", date(2026, 12, 1)),
        ("12月1日", date(2026, 12, 1)),
        ("12月1号", date(2026, 12, 1)),
        ("十二月一日", date(2026, 12, 1)),
        ("3月5日", date(2027, 3, 5)),
        ("明年3月1日", date(2027, 3, 1)),
        ("today", TODAY),
        ("Today!", TODAY),
        ("tomorrow", date(2026, 11, 28)),
        ("yesterday", date(2026, 11, 26)),
        ("the day after tomorrow", date(2026, 11, 29)),
        ("今天", TODAY),
        ("明天", date(2026, 11, 28)),
        ("后天", date(2026, 11, 29)),
        ("昨天", date(2026, 11, 26)),
        ("前天", date(2026, 11, 25)),
        # TODAY is a Friday: "Friday" is today, "next Friday" is the Friday of next ISO week.
        ("next Friday", date(2026, 12, 4)),
        ("Friday", TODAY),
        ("this Friday", TODAY),
        ("by friday", TODAY),
        ("next Monday", date(2026, 11, 30)),
        ("next Sunday", date(2026, 12, 6)),
        ("Monday", date(2026, 11, 30)),
        ("thu", date(2026, 12, 3)),
        ("last Friday", date(2026, 11, 20)),
        ("friday next week", date(2026, 12, 4)),
        ("下周五", date(2026, 12, 4)),
        ("下星期五", date(2026, 12, 4)),
        ("下礼拜五", date(2026, 12, 4)),
        ("下个星期一", date(2026, 11, 30)),
        ("下下周五", date(2026, 12, 11)),
        ("上周五", date(2026, 11, 20)),
        ("周五", TODAY),
        ("星期五", TODAY),
        ("本周五", TODAY),
        ("这周五", TODAY),
        ("周四", date(2026, 12, 3)),
        ("周日", date(2026, 11, 29)),
        ("星期天", date(2026, 11, 29)),
        ("下周日", date(2026, 12, 6)),
        ("月底", date(2026, 11, 30)),
        ("end of month", date(2026, 11, 30)),
        ("end of the month", date(2026, 11, 30)),
        ("下月底", date(2026, 12, 31)),
        ("end of next month", date(2026, 12, 31)),
        ("月初", date(2026, 12, 1)),
        ("本月初", date(2026, 11, 1)),
        ("下月初", date(2026, 12, 1)),
        ("beginning of next month", date(2026, 12, 1)),
        ("next month", date(2026, 12, 1)),
        ("下个月", date(2026, 12, 1)),
        ("next week", date(2026, 11, 30)),
        ("下周", date(2026, 11, 30)),
        ("in 3 days", date(2026, 11, 30)),
        ("3 days later", date(2026, 11, 30)),
        ("3 days ago", date(2026, 11, 24)),
        ("3天后", date(2026, 11, 30)),
        ("三天后", date(2026, 11, 30)),
        ("3天前", date(2026, 11, 24)),
        ("in 2 weeks", date(2026, 12, 11)),
        ("in two weeks", date(2026, 12, 11)),
        ("两周后", date(2026, 12, 11)),
        ("2周后", date(2026, 12, 11)),
        ("一个月后", date(2026, 12, 27)),
        ("in a month", date(2026, 12, 27)),
        ("年底", date(2026, 12, 31)),
        ("end of year", date(2026, 12, 31)),
        ("end of the year", date(2026, 12, 31)),
        ("next year", date(2027, 1, 1)),
        ("明年", date(2027, 1, 1)),
    ],
)
def test_parse_date(text: str, expected: date) -> None:
    lang = "zh" if re.search(r"[\u4e00-\u9fff]", text) else "en"
    assert parse_date(text, today=TODAY, lang=lang) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("12/1", date(2025, 12, 1)),
        ("11/27", date(2026, 11, 27)),
        ("Dec 1", date(2025, 12, 1)),
        ("12月1日", date(2025, 12, 1)),
        ("Thursday", date(2026, 11, 26)),
        ("周一", date(2026, 11, 23)),
        ("月初", date(2026, 11, 1)),
    ],
)
def test_parse_date_prefer_past(text: str, expected: date) -> None:
    assert parse_date(text, today=TODAY, prefer="past") == expected


def test_feb_29_without_year_finds_next_leap_year() -> None:
    assert parse_date("2/29", today=TODAY) == date(2028, 2, 29)
    assert parse_date("2/29", today=TODAY, prefer="past") == date(2024, 2, 29)


def test_month_start_on_the_first() -> None:
    assert parse_date("月初", today=date(2026, 12, 1)) == date(2026, 12, 1)


def test_dateparser_fallback() -> None:
    assert parse_date("in 10 days", today=TODAY) == date(2026, 12, 7)
    assert parse_date("2 December", today=TODAY) == date(2026, 12, 2)
    assert parse_date("Dec 2nd 2026 at noon", today=TODAY) == date(2026, 12, 2)


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("2026-02-30", "date_invalid"),
        ("2026-13-01", "date_invalid"),
        ("2月30日", "date_invalid"),
        ("Feb 30", "date_invalid"),
        ("13/13", "date_invalid"),
        ("1.12", "date_ambiguous"),
        ("3.4.2026", "date_ambiguous"),
        ("", "date"),
        ("blah", "date"),
        ("5", "date"),
        ("asap", "date"),
        ("x" * 300, "date"),
        ("in 9999999 days", "date"),
    ],
)
def test_parse_date_errors(text: str, code: str) -> None:
    assert _code(lambda: parse_date(text, today=TODAY)) == code


def test_date_error_params() -> None:
    with pytest.raises(ParseError) as info:
        parse_date("blah", today=TODAY, lang="zh")
    assert info.value.params["examples"] == ["2026-12-11", "12月1日", "下周五"]
    with pytest.raises(ParseError) as info:
        parse_date("1.12", today=TODAY)
    assert info.value.params["readings"] == ["2027-01-12", "2026-12-01"]


def test_parse_date_rejects_bad_prefer() -> None:
    with pytest.raises(ValueError):
        parse_date("today", today=TODAY, prefer="soon")


_MONTH_NAMES = [
    "January", "February", "March", "April", "May", "June", "July", "August", "September",
    "October", "November", "December",
]  # fmt: skip
_TODAYS = st.dates(min_value=date(2000, 1, 1), max_value=date(2090, 12, 31))


@FAST
@given(today=_TODAYS, offset=st.integers(min_value=-5 * 366, max_value=5 * 366))
def test_dates_round_trip(today: date, offset: int) -> None:
    target = today + timedelta(days=offset)
    forms = [
        target.isoformat(),
        f"{target.year}/{target.month}/{target.day}",
        f"{target.year}年{target.month}月{target.day}日",
        f"{_MONTH_NAMES[target.month - 1]} {target.day}, {target.year}",
        f"{target.day} {_MONTH_NAMES[target.month - 1][:3]} {target.year}",
    ]
    for form in forms:
        for prefer in ("future", "past"):
            assert parse_date(form, today=today, prefer=prefer) == target, form


@FAST
@given(today=_TODAYS, offset=st.integers(min_value=0, max_value=364))
def test_month_day_without_year_is_next_occurrence(today: date, offset: int) -> None:
    target = today + timedelta(days=offset)  # within a year, so the next occurrence
    assert parse_date(f"{target.month}/{target.day}", today=today) == target
    assert parse_date(f"{target.month}月{target.day}日", today=today) == target
    back = today - timedelta(days=offset)
    assert parse_date(f"{back.month}/{back.day}", today=today, prefer="past") == back


_FUTURE_FORMS = [
    "next Friday", "下周五", "Friday", "周五", "本周五", "月底", "end of month", "下月底",
    "月初", "下月初", "next month", "下个月", "next week", "年底", "end of year",
    "tomorrow", "明天", "in 3 days", "两周后", "12/1", "Dec 1", "12月1日", "2/29",
]  # fmt: skip


@FAST
@given(today=_TODAYS, form=st.sampled_from(_FUTURE_FORMS))
def test_future_forms_are_never_before_today(today: date, form: str) -> None:
    assert parse_date(form, today=today, prefer="future") >= today


@FAST
@given(today=_TODAYS, weekday=st.integers(min_value=0, max_value=6))
def test_next_weekday_is_in_next_iso_week(today: date, weekday: int) -> None:
    en = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"][weekday]
    zh = "一二三四五六日"[weekday]
    monday = today - timedelta(days=today.weekday())
    expected = monday + timedelta(days=7 + weekday)
    assert parse_date(f"next {en}", today=today) == expected
    assert parse_date(f"下周{zh}", today=today) == expected
    this = parse_date(f"周{zh}", today=today)
    assert this.weekday() == weekday
    assert 0 <= (this - today).days <= 6


# --------------------------------------------------------------------------------------------
# Yes / no, numbers, ratings
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "y", "Y", "yes", "Yes!", "YES.", "yeah", "yep", "ok", "OK", "sure", "true", "1", "１",
        "是", "是的", "是。", "对", "对的", "有", "好", "好的", "行", "可以", "嗯", "要", "需要",
        "✓", "👍", "  yes  ", "ｙｅｓ",
    ],
)  # fmt: skip
def test_yes(text: str) -> None:
    assert parse_yes_no(text) is True


@pytest.mark.parametrize(
    "text",
    [
        "n", "no", "No.", "nope", "false", "2", "否", "不", "不是", "没有", "无", "不要",
        "不需要", "不行", "没", "不。",
    ],
)  # fmt: skip
def test_no(text: str) -> None:
    assert parse_yes_no(text) is False


@pytest.mark.parametrize("text", ["", "maybe", "3", "yes no", "也许", "是不是", "?"])
def test_yes_no_errors(text: str) -> None:
    assert _code(lambda: parse_yes_no(text)) == "yes_no"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1200", "1200"),
        ("1,200", "1200"),
        ("1.2万", "12000"),
        ("3k", "3000"),
        ("五十", "50"),
        ("两百", "200"),
        ("约200", "200"),
        ("大约200人", "200"),
        ("about 200", "200"),
        ("about 200 people", "200"),
        ("approx. 30 pcs", "30"),
        ("~30", "30"),
        ("200人", "200"),
        ("5个", "5"),
        ("12套", "12"),
        ("1.5", "1.5"),
        ("0,5", "0.5"),
        ("-3", "-3"),
        ("+3", "3"),
        ("100左右", "100"),
    ],
)
def test_parse_number(text: str, expected: str) -> None:
    assert parse_number(text) == Decimal(expected)


def test_parse_number_range_and_integer() -> None:
    assert parse_number("5", minimum=Decimal(1), maximum=Decimal(10), integer=True) == 5
    with pytest.raises(ParseError) as info:
        parse_number("11", minimum=Decimal(1), maximum=Decimal(10))
    assert info.value.code == "number_range"
    assert info.value.params == {"minimum": "1", "maximum": "10"}
    with pytest.raises(ParseError) as info:
        parse_number("-1", minimum=Decimal(0))
    assert info.value.params == {"minimum": "0", "maximum": None}
    with pytest.raises(ParseError) as info:
        parse_number("1.5", integer=True)
    assert info.value.code == "number_integer"
    assert info.value.params == {"value": "1.5"}


@pytest.mark.parametrize(
    ("text", "code"),
    [("", "number"), ("abc", "number"), ("人", "number"), ("3,5", "number_ambiguous")],
)
def test_parse_number_errors(text: str, code: str) -> None:
    assert _code(lambda: parse_number(text)) == code


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("4", 4),
        ("4/5", 4),
        ("4 / 5", 4),
        ("4 out of 5", 4),
        ("★★★★", 4),
        ("★★★☆☆", 3),
        ("⭐⭐", 2),
        ("4星", 4),
        ("四星", 4),
        ("4分", 4),
        ("4 stars", 4),
        ("５", 5),
        ("1", 1),
    ],
)
def test_parse_rating(text: str, expected: int) -> None:
    assert parse_rating(text) == expected


@pytest.mark.parametrize("text", ["", "0", "6", "4/10", "4.5", "good", "☆☆", "★★★★★★"])
def test_parse_rating_errors(text: str) -> None:
    with pytest.raises(ParseError) as info:
        parse_rating(text)
    assert info.value.code == "rating"
    assert info.value.params == {"low": 1, "high": 5}


def test_parse_rating_custom_range() -> None:
    assert parse_rating("8/10", low=0, high=10) == 8
    assert parse_rating("0", low=0, high=10) == 0


# --------------------------------------------------------------------------------------------
# Choices and names
# --------------------------------------------------------------------------------------------

OPTIONS: list[tuple[str, list[str]]] = [
    ("oil_gas", ["Oil & gas", "石油天然气"]),
    ("finance", ["Finance", "金融"]),
    ("farming", ["Farming", "农业"]),
    ("decision_maker", ["Decision maker", "决策者"]),
    ("decision_process", ["Decision process", "决策流程"]),
]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2", "finance"),
        ("2.", "finance"),
        ("(2)", "finance"),
        ("２", "finance"),
        ("#2", "finance"),
        ("第2个", "finance"),
        ("Finance", "finance"),
        ("FINANCE", "finance"),
        ("ｆｉｎａｎｃｅ", "finance"),
        ("finance", "finance"),
        ("oil_gas", "oil_gas"),
        ("Oil & gas", "oil_gas"),
        ("金融", "finance"),
        ("石油天然气", "oil_gas"),
        ("oil", "oil_gas"),
        ("fi", "finance"),
        ("fa", "farming"),
        ("石油", "oil_gas"),
        ("gas", "oil_gas"),
        ("天然气", "oil_gas"),
        ("decision maker", "decision_maker"),
        ("decision m", "decision_maker"),
        ("决策者", "decision_maker"),
    ],
)
def test_parse_choice(text: str, expected: str) -> None:
    assert parse_choice(text, OPTIONS) == expected


def test_parse_choice_ambiguous() -> None:
    with pytest.raises(ParseError) as info:
        parse_choice("decision", OPTIONS)
    assert info.value.code == "choice_ambiguous"
    assert info.value.params["candidates"] == ["Decision maker", "Decision process"]
    assert _code(lambda: parse_choice("f", OPTIONS)) == "choice_ambiguous"
    assert _code(lambda: parse_choice("决策", OPTIONS)) == "choice_ambiguous"


@pytest.mark.parametrize("text", ["", "0", "6", "x", "banking", "..."])
def test_parse_choice_errors(text: str) -> None:
    with pytest.raises(ParseError) as info:
        parse_choice(text, OPTIONS)
    assert info.value.code == "choice"
    assert info.value.params["count"] == 5


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1, 2", ["oil_gas", "finance"]),
        ("1,2", ["oil_gas", "finance"]),
        ("1 2", ["oil_gas", "finance"]),
        ("1，2", ["oil_gas", "finance"]),
        ("1、2", ["oil_gas", "finance"]),
        ("1; 3", ["oil_gas", "farming"]),
        ("1/3", ["oil_gas", "farming"]),
        ("3, 1", ["farming", "oil_gas"]),
        ("2, 2, 1", ["finance", "oil_gas"]),
        ("oil、金融", ["oil_gas", "finance"]),
        ("decision maker", ["decision_maker"]),
        ("decision maker, finance", ["decision_maker", "finance"]),
        ("Decision maker and Finance", ["decision_maker", "finance"]),
        ("oil and finance", ["oil_gas", "finance"]),
        ("Oil & gas", ["oil_gas"]),
        ("石油天然气和金融", ["oil_gas", "finance"]),
        ("石油及农业", ["oil_gas", "farming"]),
        ("finance farming", ["finance", "farming"]),
        ("2", ["finance"]),
    ],
)
def test_parse_multi_choice(text: str, expected: list[str]) -> None:
    assert parse_multi_choice(text, OPTIONS) == expected


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("", "multi_choice"),
        (" , ；", "multi_choice"),
        ("1, 9", "multi_choice"),
        ("oil, xyz", "multi_choice"),
        ("decision, 1", "choice_ambiguous"),
    ],
)
def test_parse_multi_choice_errors(text: str, code: str) -> None:
    assert _code(lambda: parse_multi_choice(text, OPTIONS)) == code


def test_multi_choice_error_names_the_item() -> None:
    with pytest.raises(ParseError) as info:
        parse_multi_choice("oil, xyz", OPTIONS)
    assert info.value.params["item"] == "xyz"


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("  ACME  Corp. ", "acme corp"),
        ("ＡＣＭＥ", "acme"),
        ("“中国石油”", "中国石油"),
        ("Straße", "strasse"),
        ("AT&T!", "at&t"),
        ("", ""),
    ],
)
def test_normalize_key(name: str, key: str) -> None:
    assert normalize_key(name) == key


def test_close_matches() -> None:
    names = ["中国石油天然气", "中石化", "Acme Corp", "Acme", "Acne", "Zeta"]
    assert close_matches("acme", names) == ["Acme", "Acme Corp", "Acne"]
    assert close_matches("ACME corp.", names)[0] == "Acme Corp"
    assert close_matches("中石油", names)[0] == "中国石油天然气"
    assert close_matches("中国石油", names)[0] == "中国石油天然气"
    assert close_matches("acme", names, limit=1) == ["Acme"]
    assert close_matches("qqqq", names) == []
    assert close_matches("", names) == []
    assert close_matches("acme", ["Acme", "Acme"]) == ["Acme"]


# --------------------------------------------------------------------------------------------
# Robustness: nothing but ParseError, ever
# --------------------------------------------------------------------------------------------


@FAST
@given(text=st.text(max_size=40), today=_TODAYS)
def test_parsers_raise_only_parse_error(text: str, today: date) -> None:
    calls: list[Callable[[], object]] = [
        lambda: parse_money(text),
        lambda: parse_date(text, today=today),
        lambda: parse_date(text, today=today, lang="zh", prefer="past"),
        lambda: parse_yes_no(text),
        lambda: parse_number(text, minimum=Decimal(0), integer=True),
        lambda: parse_rating(text),
        lambda: parse_choice(text, OPTIONS),
        lambda: parse_multi_choice(text, OPTIONS),
        lambda: close_matches(text, ["Acme", "中国石油"]),
        lambda: normalize_key(text),
    ]
    for call in calls:
        with contextlib.suppress(ParseError):
            call()


_CHATTY = st.text(alphabet="0123456789.,  ¥$k万亿千百十五两元-/年月日号周下", max_size=12)


@FAST
@given(text=_CHATTY, today=_TODAYS)
def test_parsers_raise_only_parse_error_on_number_like_text(text: str, today: date) -> None:
    for call in (
        lambda: parse_money(text),
        lambda: parse_number(text),
        lambda: parse_date(text, today=today),
        lambda: parse_rating(text),
    ):
        try:
            result = call()
        except ParseError:
            continue
        if isinstance(result, Money):
            assert Decimal(0) <= result.amount <= Decimal(10) ** 15


# --------------------------------------------------------------------------------------------
# Message catalogs
# --------------------------------------------------------------------------------------------


def _catalog(lang: str) -> dict[str, str]:
    data = yaml.safe_load((LOCALES / lang / "parsing.yaml").read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return {str(k): str(v) for k, v in data.items()}


def _raised_codes() -> set[str]:
    return set(re.findall(r'ParseError\(\s*"([a-z_]+)"', SOURCE.read_text(encoding="utf-8")))


# One input per error code, so every template is rendered with the params really raised.
_TRIGGERS: dict[str, Callable[[], object]] = {
    "money": lambda: parse_money("abc"),
    "money_ambiguous": lambda: parse_money("3,5"),
    "money_negative": lambda: parse_money("-5"),
    "money_too_large": lambda: parse_money("9" * 20),
    "number": lambda: parse_number("abc"),
    "number_ambiguous": lambda: parse_number("3,5"),
    "number_range": lambda: parse_number("11", minimum=Decimal(1), maximum=Decimal(10)),
    "number_integer": lambda: parse_number("1.5", integer=True),
    "rating": lambda: parse_rating("9"),
    "yes_no": lambda: parse_yes_no("maybe"),
    "choice": lambda: parse_choice("x", OPTIONS),
    "choice_ambiguous": lambda: parse_choice("decision", OPTIONS),
    "multi_choice": lambda: parse_multi_choice("1, xyz", OPTIONS),
    "date": lambda: parse_date("blah", today=TODAY),
    "date_invalid": lambda: parse_date("2026-02-30", today=TODAY),
    "date_ambiguous": lambda: parse_date("1.12", today=TODAY),
}
_EXTRA_PARAMS: list[tuple[str, Callable[[], object]]] = [
    ("money_ambiguous", lambda: parse_money("$5 ¥6")),
    ("number_range", lambda: parse_number("-1", minimum=Decimal(0))),
    ("number_range", lambda: parse_number("11", maximum=Decimal(10))),
    ("multi_choice", lambda: parse_multi_choice(",", OPTIONS)),
    ("rating", lambda: parse_rating("11", low=0, high=10)),
]


def test_catalogs_have_the_same_keys() -> None:
    assert _catalog("en").keys() == _catalog("zh").keys()


def test_every_raised_code_has_a_message() -> None:
    codes = _raised_codes()
    assert {"money", "money_ambiguous", "date", "choice"} <= codes
    keys = _catalog("en").keys()
    assert {f"parse.{code}" for code in codes} <= keys
    assert keys == {f"parse.{code}" for code in codes}  # no stale keys either
    assert set(_TRIGGERS) == codes


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_messages_render_with_the_raised_params(lang: str) -> None:
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    catalog = _catalog(lang)
    for code, call in [*_TRIGGERS.items(), *_EXTRA_PARAMS]:
        with pytest.raises(ParseError) as info:
            call()
        assert info.value.code == code
        params: dict[str, Any] = info.value.params
        message = env.from_string(catalog[f"parse.{code}"]).render(**params)
        assert message.strip(), code
        assert "{{" not in message and "None" not in message, (code, message)


def test_module_exports() -> None:
    assert set(parsing.__all__) >= {
        "Money",
        "ParseError",
        "parse_money",
        "parse_date",
        "parse_yes_no",
        "parse_number",
        "parse_rating",
        "parse_choice",
        "parse_multi_choice",
        "close_matches",
        "normalize_key",
    }
