"""The flood limiter on a fake clock, and the HTML splitting and keyboards (no server)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from telegram.error import RetryAfter

from handlers.telegram.limiter import FloodLimiter, Limits
from handlers.telegram.render import (
    MAX_CALLBACK_DATA,
    keyboard,
    parse_callback,
    split_html,
    telegram_html,
    utf16_len,
)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def limiter(clock: Clock, limits: Limits | None = None) -> FloodLimiter:
    return FloodLimiter(limits or Limits(), clock=clock, sleep=clock.sleep)


async def _send_times(lim: FloodLimiter, clock: Clock, chats: list[str],
                      endpoint: str = "sendMessage") -> list[float]:
    times: list[float] = []

    async def call() -> bool:
        times.append(clock.now)
        return True

    for chat in chats:
        await lim.process_request(call, (), {}, endpoint, {"chat_id": chat}, None)
    return times


async def test_a_private_chat_gets_a_burst_then_one_a_second() -> None:
    clock = Clock()
    lim = limiter(clock)
    times = await _send_times(lim, clock, ["42"] * 7)
    assert times == [0.0, 0.0, 0.0, 1.0, 2.0, 3.0, 4.0]
    # after a quiet while the burst is there again
    clock.now += 10.0
    times = await _send_times(lim, clock, ["42"] * 4)
    assert times == [14.0, 14.0, 14.0, 15.0]


async def test_a_group_gets_twenty_a_minute() -> None:
    clock = Clock()
    times = await _send_times(limiter(clock), clock, ["-1001"] * 41)
    for i in range(len(times)):
        assert sum(1 for t in times if times[i] <= t < times[i] + 60.0) <= 20
    assert times[20] >= 60.0 and times[40] >= 120.0


async def test_thirty_a_second_overall() -> None:
    clock = Clock()
    chats = [str(i) for i in range(90)]
    times = await _send_times(limiter(clock), clock, chats)
    for i in range(len(times)):
        assert sum(1 for t in times if times[i] <= t < times[i] + 1.0) <= 30
    assert times[-1] >= 2.0
    assert max(times) < 3.0  # and no slower than needed


async def test_callback_answers_and_the_menu_are_not_paced() -> None:
    clock = Clock()
    lim = limiter(clock)
    await _send_times(lim, clock, ["42"] * 3)
    times = await _send_times(lim, clock, ["42"] * 10, endpoint="answerCallbackQuery")
    assert set(times) == {0.0}


async def test_retry_after_is_waited_out_and_holds_the_chat() -> None:
    clock = Clock()
    lim = limiter(clock)
    attempts: list[float] = []

    async def flaky() -> dict[str, Any]:
        attempts.append(clock.now)
        if len(attempts) < 3:
            raise RetryAfter(5)
        return {"ok": True}

    result = await lim.process_request(flaky, (), {}, "sendMessage", {"chat_id": "7"}, None)
    assert result == {"ok": True}
    assert attempts == [0.0, 5.0, 10.0]
    # the outbox asks for no retries: the error comes back at once
    attempts.clear()
    with pytest.raises(RetryAfter):
        await lim.process_request(flaky, (), {}, "sendMessage", {"chat_id": "8"},
                                  {"retries": 0})
    assert len(attempts) == 1
    # and that chat is held for the time Telegram named
    times = await _send_times(lim, clock, ["8"])
    assert times[0] >= 15.0


# ---- HTML -------------------------------------------------------------------------------------


def _balanced(text: str) -> bool:
    stack: list[str] = []
    for closing, name in re.findall(r"<(/?)(b|i|code)>", text):
        if not closing:
            stack.append(name)
        elif not stack or stack.pop() != name:
            return False
    return not stack and not re.search(r"<(?!/?(b|i|code)>)", text)


def test_short_text_is_one_piece() -> None:
    assert split_html("<b>hi</b> &amp; bye") == ["<b>hi</b> &amp; bye"]


def test_long_text_splits_at_paragraphs_keeping_tags_balanced() -> None:
    para = "<b>Head</b>\n" + "<i>" + "word " * 300 + "</i>"
    text = "\n\n".join([para] * 5)
    pieces = split_html(text)
    assert len(pieces) >= 2
    for piece in pieces:
        assert utf16_len(piece) <= 4096 and _balanced(piece)
    assert "".join(pieces).count("Head") == 5


def test_one_endless_word_and_emoji_are_cut_within_the_limit() -> None:
    text = "<code>" + "🚀" * 5000 + "</code>"
    pieces = split_html(text)
    assert all(utf16_len(p) <= 4096 and _balanced(p) for p in pieces)
    assert "".join(pieces).count("🚀") == 5000


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(["<b>", "</b>", "<i>", "</i>", "&amp;", "长", "🚀", "word",
                                 " ", "\n", "\n\n", "x" * 50]), max_size=400),
       st.integers(min_value=80, max_value=600))
def test_any_text_splits_into_valid_pieces(parts: list[str], limit: int) -> None:
    text = telegram_html("".join(parts))
    assert _balanced(text)
    pieces = split_html(text, limit)
    for piece in pieces:
        assert utf16_len(piece) <= limit and _balanced(piece)
    def strip(s: str) -> str:
        return re.sub(r"</?(b|i|code)>|\s", "", s)
    assert "".join(strip(p) for p in pieces) == strip(text)


def test_stray_markup_from_a_catalog_is_made_safe() -> None:
    assert telegram_html("advance <name> & co") == "advance &lt;name&gt; &amp; co"
    assert telegram_html("<b>open") == "<b>open</b>"
    assert telegram_html("shut</i> <b>a<i>b</b>") == "shut <b>a<i>b</i></b>"
    assert telegram_html("&lt;kept&gt; &#39; &amp;") == "&lt;kept&gt; &#39; &amp;"


def test_callback_data_fits_whatever_the_options() -> None:
    options = [(f"value-{'x' * 200}-{i}", f"Label {i} " + "长" * 40) for i in range(120)]
    controls = [("back", "◀ Back"), ("skip", "Skip"), ("tip", "💡 Tip"), ("cancel", "✖")]
    for multi in (False, True):
        markup = keyboard("Ab3dE6gH9k", options, controls, multi=multi, selected=[1, 5])
        datas = [b.callback_data for row in markup.inline_keyboard for b in row]
        assert all(len(str(d).encode()) <= MAX_CALLBACK_DATA for d in datas)
        for data in datas:
            tap = parse_callback(str(data))
            assert tap is not None and tap.key == "Ab3dE6gH9k"
    assert parse_callback("a:key") is None and parse_callback("zz:k:1") is None
    assert parse_callback(None) is None
