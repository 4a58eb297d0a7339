"""Telegram's flood limits, kept before they are hit, and `RetryAfter` honoured when they are.

Telegram asks for about one message a second per chat (short bursts are tolerated), at most 20
messages a minute in a group and about 30 a second overall. A chat gets a token bucket (a reply
of a few messages goes at once, then one a second); the group and overall limits are sliding
windows, "at most `count` sends in any `period` seconds", so they are never exceeded. A send
waits until every limit it falls under has room. A 429 (`RetryAfter`) holds that chat back for
the time Telegram named and, unless the caller said `{"retries": 0}` (the outbox, which
reschedules by itself), the request is sent again.
"""

from __future__ import annotations

import asyncio
import logging
import time
import warnings
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from telegram.error import RetryAfter
from telegram.ext import BaseRateLimiter
from telegram.warnings import PTBDeprecationWarning

log = logging.getLogger(__name__)

# PTB 22 warns inside `RetryAfter.__init__` itself (it reads its own `retry_after`), so every
# 429 Telegram sends would put a deprecation notice in the admin's log. `retry_after_seconds`
# below reads both the int and the timedelta form, so the notice asks nothing of us.
warnings.filterwarnings("ignore", message=r".*`retry_after` will be of type",
                        category=PTBDeprecationWarning)

# calls that post or change nothing a user sees are never paced
UNPACED = frozenset({
    "getMe", "getUpdates", "setWebhook", "deleteWebhook", "getWebhookInfo", "setMyCommands",
    "getMyCommands", "deleteMyCommands", "answerCallbackQuery", "sendChatAction", "close",
    "logOut",
})


@dataclass(frozen=True)
class Limits:
    """The defaults follow Telegram's published limits."""

    per_chat: tuple[int, float] = (3, 1.0)  # a burst of 3, then 1 a second (token bucket)
    per_group: tuple[int, float] = (20, 60.0)  # at most 20 in any 60 s
    overall: tuple[int, float] = (30, 1.0)  # at most 30 in any second
    retries: int = 5  # RetryAfter retries of a reply before giving up


def retry_after_seconds(exc: RetryAfter) -> float:
    """`RetryAfter.retry_after` as seconds (PTB 22 returns int or timedelta, with a warning)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PTBDeprecationWarning)
        value: Any = exc.retry_after
    if isinstance(value, timedelta):
        return value.total_seconds()
    return float(value)


class _Window:
    """At most `count` events in any `period` seconds, per key."""

    def __init__(self, count: int, period: float) -> None:
        self.count = count
        self.period = period
        self.events: dict[str, deque[float]] = {}

    def wait(self, key: str, now: float) -> float:
        times = self.events.get(key)
        if times is None:
            return 0.0
        while times and times[0] <= now - self.period:
            times.popleft()
        if len(times) < self.count:
            return 0.0
        return times[0] + self.period - now

    def add(self, key: str, now: float) -> None:
        self.events.setdefault(key, deque()).append(now)
        if len(self.events) > 10_000:  # forget chats that have been quiet for a whole period
            self.events = {k: v for k, v in self.events.items()
                           if v and v[-1] > now - self.period}


class _Bucket:
    """`burst` sends at once per key, refilled at `rate` a second."""

    def __init__(self, burst: int, rate: float) -> None:
        self.burst = float(burst)
        self.rate = rate
        self.state: dict[str, tuple[float, float]] = {}  # key -> (tokens, when)

    def _tokens(self, key: str, now: float) -> float:
        tokens, when = self.state.get(key, (self.burst, now))
        return min(self.burst, tokens + (now - when) * self.rate)

    def wait(self, key: str, now: float) -> float:
        tokens = self._tokens(key, now)
        return 0.0 if tokens >= 1.0 else (1.0 - tokens) / self.rate

    def add(self, key: str, now: float) -> None:
        self.state[key] = (self._tokens(key, now) - 1.0, now)
        if len(self.state) > 10_000:  # forget chats whose bucket is full again
            self.state = {k: v for k, v in self.state.items()
                          if v[0] + (now - v[1]) * self.rate < self.burst}


class FloodLimiter(BaseRateLimiter[dict[str, Any]]):
    """python-telegram-bot's rate limiter hook, with Telegram's three limits."""

    def __init__(self, limits: Limits | None = None, *,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self.limits = limits or Limits()
        self.clock = clock
        self.sleep = sleep
        self._chat = _Bucket(*self.limits.per_chat)
        self._group = _Window(*self.limits.per_group)
        self._overall = _Window(*self.limits.overall)
        self._held: dict[str, float] = {}  # chat -> monotonic time Telegram told us to wait for

    async def initialize(self) -> None:
        return None

    async def shutdown(self) -> None:
        return None

    async def acquire(self, chat_id: str | None) -> None:
        """Wait until a message to `chat_id` fits every window, then count it."""
        while True:
            now = self.clock()
            waits = [self._overall.wait("*", now)]
            if chat_id is not None:
                waits.append(self._held.get(chat_id, 0.0) - now)
                waits.append(self._chat.wait(chat_id, now))
                if chat_id.startswith("-"):  # groups, supergroups and channels have negative ids
                    waits.append(self._group.wait(chat_id, now))
            delay = max(waits)
            if delay <= 0:
                break
            await self.sleep(delay)
        self._overall.add("*", now)
        if chat_id is not None:
            self._chat.add(chat_id, now)
            if chat_id.startswith("-"):
                self._group.add(chat_id, now)

    def hold(self, chat_id: str | None, seconds: float) -> None:
        """Telegram said to wait: nothing goes to that chat before then."""
        if chat_id is not None:
            self._held[chat_id] = max(self._held.get(chat_id, 0.0), self.clock() + seconds)

    async def process_request(
        self,
        callback: Callable[..., Coroutine[Any, Any, bool | dict[str, Any] | list[dict[str, Any]]]],
        args: Any,
        kwargs: dict[str, Any],
        endpoint: str,
        data: dict[str, Any],
        rate_limit_args: dict[str, Any] | None,
    ) -> bool | dict[str, Any] | list[dict[str, Any]]:
        if endpoint in UNPACED:
            return await callback(*args, **kwargs)
        chat = data.get("chat_id")
        chat_id = None if chat is None else str(chat)
        retries = self.limits.retries
        if rate_limit_args is not None and "retries" in rate_limit_args:
            retries = int(rate_limit_args["retries"])
        attempt = 0
        while True:
            await self.acquire(chat_id)
            try:
                return await callback(*args, **kwargs)
            except RetryAfter as exc:
                seconds = retry_after_seconds(exc)
                self.hold(chat_id, seconds)
                if attempt >= retries:
                    raise
                attempt += 1
                log.info("telegram flood control on %s to %s: waiting %.1fs (retry %d/%d)",
                         endpoint, chat_id, seconds, attempt, retries)
