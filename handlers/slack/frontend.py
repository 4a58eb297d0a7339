"""The Slack front end: a Bolt AsyncApp over HTTP (`POST /slack/events`) or Socket Mode.

This module holds the wiring and the ways of answering (post in a DM or channel, ephemeral,
upload, deliver for the outbox); `listeners.py` translates Slack's events into coach turns,
`home.py` builds the App Home tab and `modals.py` the record editors.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
from markupsafe import Markup
from slack_bolt.adapter.starlette.async_handler import AsyncSlackRequestHandler
from slack_bolt.async_app import AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.async_handler import AsyncRetryHandler
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
    AsyncServerErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from bot.app import App
from bot.delivery import DeliveryError, Target
from dialogs.messages import Outbound
from handlers.guard import Malformed, refuse
from handlers.slack import guard
from handlers.slack.render import SlackMessage, group, plain_label, to_slack
from store import conversations as conv
from store.db import ConfigError

log = logging.getLogger(__name__)

PLATFORM = "slack"
EVENTS_PATH = "/slack/events"
AFTER_ACK_CONCURRENCY = 8  # listener work running at once (the rest waits its turn)

# Errors after which posting to the same place again cannot work (the outbox gives up on it).
PERMANENT_ERRORS = frozenset({
    "channel_not_found", "not_in_channel", "is_archived", "account_inactive",
    "user_not_found", "user_disabled", "cannot_dm_bot", "invalid_auth", "not_authed",
    "token_revoked", "missing_scope", "restricted_action", "msg_too_long", "no_text",
    "invalid_blocks",
})
# Ephemeral posting where the bot is not a member fails with these; the slash command's
# response URL still works there.
NOT_THERE = frozenset({"channel_not_found", "not_in_channel", "user_not_in_channel"})


def retry_handlers() -> list[AsyncRetryHandler]:
    """Connection errors, 429 (waits `Retry-After`) and 500/503 (backoff) are retried."""
    return [AsyncConnectionErrorRetryHandler(max_retry_count=2),
            AsyncRateLimitErrorRetryHandler(max_retry_count=3),
            AsyncServerErrorRetryHandler(max_retry_count=3)]


@dataclass(frozen=True)
class Profile:
    """What Slack knows about a user that the coach uses when it first meets them."""

    name: str | None = None
    lang: str | None = None  # from the Slack locale (zh-CN -> zh)


@dataclass(frozen=True)
class Where:
    """Who a Slack request came from and where to answer them; `request_id` names it in logs."""

    team: str
    user: str
    channel: str | None = None        # where replies go (a DM, or the command's channel)
    ephemeral: bool = False           # answer only the user, inside `channel`
    response_url: str | None = None
    request_id: str = ""


class SlackFrontEnd:
    """Implements bot.delivery.FrontEnd for Slack."""

    platform = PLATFORM

    def __init__(self, app: App) -> None:
        settings = app.settings
        if not settings.slack_bot_token:
            raise ConfigError("SLACK_BOT_TOKEN is not set")
        socket_mode = bool(settings.slack_app_token)
        if not socket_mode and not settings.slack_signing_secret:
            raise ConfigError("SLACK_SIGNING_SECRET must be set for Slack over HTTP "
                              "(or set SLACK_APP_TOKEN to use Socket Mode)")
        self.app = app
        self.coach = app.coach
        self.r = app.renderer
        self.settings = settings
        self.socket_mode = socket_mode
        # One HTTP session for every Web API call (slack_sdk opens a new connection per call
        # otherwise); it needs the running loop, which `serve` and the tests have here.
        self._session = _session()
        self.client = AsyncWebClient(token=settings.slack_bot_token,
                                     base_url=settings.slack_api_url,
                                     retry_handlers=retry_handlers(), session=self._session)
        # Tokens come from Settings, never from Bolt's own environment look-ups.
        self.bolt = AsyncApp(
            name="salescoach", client=self.client, logger=_bolt_logger(),
            signing_secret=settings.slack_signing_secret or "",
            request_verification_enabled=bool(settings.slack_signing_secret),
            # Bolt answers Slack when the listener returns; each listener acks and hands its
            # work to `after_ack`. (With False, Bolt runs the listener as a task and polls for
            # its ack every 10 ms, so every ack waited 10 ms or more behind other work.)
            process_before_response=True,
        )
        self.handler = AsyncSlackRequestHandler(self.bolt)
        self._socket: Any = None
        self._dm: dict[str, str] = {}
        self._profiles: dict[str, Profile] = {}
        self._busy = 0
        self._tasks: set[asyncio.Task[None]] = set()
        # work after the ack runs a few at a time: under a burst, every request's own steps
        # would otherwise queue on the event loop ahead of the next request's ack
        self._slots = asyncio.Semaphore(AFTER_ACK_CONCURRENCY)
        from handlers.slack import listeners

        listeners.register(self)

    # ---- FrontEnd -----------------------------------------------------------------------------

    def routes(self) -> Sequence[BaseRoute]:
        async def events(request: Request) -> Response:
            try:  # a body Bolt cannot take is refused before any work
                guard.check(request.headers, await request.body())
            except Malformed as bad:
                return refuse("Slack", bad.reason)
            return await self.handler.handle(request)

        if self.socket_mode:  # everything arrives over the socket; no unsigned door open
            return []
        return [Route(EVENTS_PATH, events, methods=["POST"])]

    async def start(self) -> None:
        if self.socket_mode:
            from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler

            self._socket = AsyncSocketModeHandler(self.bolt, self.settings.slack_app_token)
            await self._socket.connect_async()
            log.info("Slack: connected over Socket Mode")
        else:
            log.info("Slack: serving events, commands and interactivity on POST %s",
                     EVENTS_PATH)

    async def stop(self) -> None:
        if self._socket is not None:
            await self._socket.close_async()
            self._socket = None
        await self.settle(timeout=10)
        if self._session is not None:
            await self._session.close()

    async def deliver(self, target: Target, messages: Sequence[Outbound]) -> list[str]:
        """Post to a channel or a user's DM; Slack's errors as DeliveryError for the outbox."""
        if target.kind == "channel" and any(m.private for m in messages):
            raise DeliveryError("private_message_to_channel", permanent=True)
        try:
            channel = target.key if target.kind == "channel" else await self.dm_channel(
                target.key)
            lang = await self.lang_of(target.org_key, target.key) if target.kind == "user" \
                else self.settings.lang
            return await self.post(channel, messages, lang, thread=target.thread)
        except SlackApiError as exc:
            raise delivery_error(exc) from exc
        except (OSError, TimeoutError) as exc:
            raise DeliveryError(f"network: {type(exc).__name__}") from exc

    # ---- answering ----------------------------------------------------------------------------

    def plain(self, lang: str) -> Callable[..., str]:
        """Catalog texts as plain text (for `plain_text` fields and notes)."""
        return lambda key, /, **params: plain_label(self.r.text(lang, key, **params), limit=3000)

    def text(self, lang: str, key: str, /, **params: object) -> Markup:
        return self.r.text(lang, key, **params)

    async def dm_channel(self, user: str) -> str:
        found = self._dm.get(user)
        if found is None:
            response = await self.client.conversations_open(users=user)
            found = self._dm[user] = str(response["channel"]["id"])
        return found

    async def profile(self, user: str) -> Profile:
        """The user's display name and language from `users.info` (once per process), so the
        coach greets them by name and in Chinese when their Slack is in Chinese. A failure
        here never blocks the turn."""
        found = self._profiles.get(user)
        if found is not None:
            return found
        try:
            info = (await self.client.users_info(user=user, include_locale=True))["user"]
        except SlackApiError as exc:
            log.warning("users.info for %s failed: %s", user, exc.response.get("error"))
            return Profile()
        profile = info.get("profile") or {}
        name = profile.get("display_name") or profile.get("real_name") or info.get("real_name") \
            or info.get("name")
        locale = str(info.get("locale") or "").casefold()
        lang = next((code for code in self.r.languages if locale.startswith(code)), None)
        found = self._profiles[user] = Profile(name=name or None, lang=lang)
        return found

    def remember_dm(self, user: str, channel: str) -> None:
        self._dm[user] = channel

    async def post(self, channel: str, messages: Sequence[Outbound], lang: str, *,
                   thread: str | None = None) -> list[str]:
        """Post `messages` in order (grouped into as few posts as Slack's limits allow);
        attachments are uploaded right after the message they belong to."""
        ids: list[str] = []
        pending: list[SlackMessage] = []
        for n, message in enumerate(messages):
            pending.extend(to_slack(message, self.plain(lang)))
            if not message.attachments and n < len(messages) - 1:
                continue
            for part in group(pending):
                response = await self.client.chat_postMessage(
                    channel=channel, text=part.text, blocks=part.blocks or None,
                    thread_ts=thread, unfurl_links=False, unfurl_media=False)
                ids.append(str(response["ts"]))
            pending = []
            for attachment in message.attachments:
                uploaded = await self.client.files_upload_v2(
                    channel=channel, file=attachment.data, filename=attachment.filename,
                    title=attachment.title or attachment.filename, thread_ts=thread)
                ids.append(str(uploaded["file"]["id"]))
        return ids

    async def ephemeral(self, where: Where, messages: Sequence[Outbound], lang: str) -> None:
        """Show `messages` to `where.user` only, in `where.channel`. Attachments go to the DM
        (an ephemeral message cannot carry a file)."""
        assert where.channel is not None
        for message in messages:
            for part in to_slack(message, self.plain(lang)):
                try:
                    await self.client.chat_postEphemeral(
                        channel=where.channel, user=where.user, text=part.text,
                        blocks=part.blocks or None)
                except SlackApiError as exc:
                    if exc.response.get("error") not in NOT_THERE or not where.response_url:
                        raise
                    await self.respond(where.response_url, part.text, part.blocks)
            if message.attachments:
                dm = await self.dm_channel(where.user)
                await self.post(dm, [Outbound("", attachments=message.attachments)], lang)

    async def respond(self, response_url: str, text: str, blocks: list[dict[str, Any]],
                      *, in_channel: bool = False) -> None:
        """Answer through a slash command's response URL (works where the bot is no member)."""
        hook = AsyncWebhookClient(response_url, retry_handlers=retry_handlers())
        result = await hook.send(text=text, blocks=blocks or None,
                                 response_type="in_channel" if in_channel else "ephemeral")
        if result.status_code != 200:
            raise RuntimeError(f"response_url answered {result.status_code}: {result.body}")

    async def answer(self, where: Where, messages: Sequence[Outbound], lang: str) -> None:
        if where.ephemeral:
            await self.ephemeral(where, messages, lang)
        else:
            assert where.channel is not None
            await self.post(where.channel, messages, lang)

    async def lang_of(self, team: str, user: str) -> str:
        """The user's language (their own, their org's, or the default)."""
        speaker = await self.app.db.run(conv.find_speaker, PLATFORM, team, user)
        if speaker is None:
            return self.settings.lang
        return speaker.lang or speaker.org_lang or self.settings.lang

    # ---- running listener work: tracked, and never silent ---------------------------------------

    def after_ack(self, where: Where, work: Callable[[], Awaitable[None]]) -> None:
        """Start a listener's work, to run once the listener has returned and Bolt has sent
        the ack (see `process_before_response` above). A failure is logged with the request id
        and the user gets a polite, translated message saying so."""
        self._busy += 1
        task = asyncio.get_running_loop().create_task(self._guarded(where, work))
        self._tasks.add(task)  # the loop keeps only a weak reference to a task
        task.add_done_callback(self._tasks.discard)

    async def _guarded(self, where: Where, work: Callable[[], Awaitable[None]]) -> None:
        try:
            async with self._slots:
                await work()
        except Exception:
            log.exception("Slack request %s failed (team %s, user %s)", where.request_id,
                          where.team, where.user)
            await self.apologise(where)
        finally:
            self._busy -= 1

    async def apologise(self, where: Where) -> None:
        try:
            lang = await self.lang_of(where.team, where.user)
        except Exception:
            lang = self.settings.lang
        message = self.coach.error_reply(lang, where.request_id)
        try:
            if where.ephemeral and where.channel is not None:
                await self.ephemeral(where, [message], lang)
            elif where.channel is not None and where.channel.startswith("D"):
                await self.post(where.channel, [message], lang)
            else:  # never in a channel: a click under a nudge failed, say so privately
                await self.post(await self.dm_channel(where.user), [message], lang)
        except Exception:
            log.exception("Slack request %s: could not tell the user about the failure",
                          where.request_id)

    async def settle(self, timeout: float = 30.0) -> None:
        """Wait until no listener work is running (tests, shutdown)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        await asyncio.sleep(0)
        while self._busy and loop.time() < deadline:
            await asyncio.sleep(0.005)


def _session() -> aiohttp.ClientSession | None:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return None  # built outside a loop: slack_sdk then opens a session per call
    return aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))


class _NoTokenWarning(logging.Filter):
    """Bolt also reads SLACK_BOT_TOKEN from the environment and then warns that the client's
    token wins — which is the same token. The warning would only confuse an admin."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("As you gave `client` as well")


def _bolt_logger() -> logging.Logger:
    logger = logging.getLogger("slack_bolt.salescoach")
    if not any(isinstance(f, _NoTokenWarning) for f in logger.filters):
        logger.addFilter(_NoTokenWarning())
    return logger


# Request ids name a request in the logs: unique enough as a random prefix per process and a
# counter (uuid4 per request cost an os.urandom system call inside every listener).
_REQUEST_PREFIX = uuid.uuid4().hex[:6]
_requests = itertools.count(1)


def new_request_id() -> str:
    return f"{_REQUEST_PREFIX}{next(_requests) % 0x1000000:06x}"


def delivery_error(exc: SlackApiError) -> DeliveryError:
    error = str(exc.response.get("error") or "unknown")
    if exc.response.status_code == 429 or error == "ratelimited":
        raw = exc.response.headers.get("Retry-After") or exc.response.headers.get("retry-after")
        retry_after = _seconds(raw)
        return DeliveryError("ratelimited",
                             retry_after=retry_after if retry_after is not None else 1.0)
    return DeliveryError(error, permanent=error in PERMANENT_ERRORS)


def _seconds(raw: Any) -> float | None:
    if isinstance(raw, list | tuple):
        raw = raw[0] if raw else None
    try:
        return float(raw) if raw is not None else None
    except ValueError:
        return None


def build_frontend(app: App) -> SlackFrontEnd:
    return SlackFrontEnd(app)
