"""The coach in Telegram: python-telegram-bot's Application, over a webhook or long polling.

The adapter translates and nothing else. Every text, command and button tap becomes an
`Inbound` for `Coach.handle` (which owns dialog state and dedupes by event id); the replies are
sent back as HTML messages with inline keyboards. PTB's ConversationHandler and persistence are
not used: the conversation core and the store keep the state.

Where things go:
- private chat: everything, as in the console; `/start` greets, `/start <payload>` (a deep
  link) runs the command it names.
- a group: `/channel` and look-ups run there (what is `private` goes to the asker's private
  chat); a dialog command answers with a button that opens the private chat at that dialog,
  since a questionnaire does not belong in a group and a bot cannot write first to someone.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import html
import importlib.util
import logging
import re
import sys
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from markupsafe import Markup
from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from telegram import (
    BotCommand,
    BotCommandScopeAllGroupChats,
    BotCommandScopeAllPrivateChats,
    CallbackQuery,
    Chat,
    ChatMemberUpdated,
    InlineKeyboardMarkup,
    InputFile,
    LinkPreviewOptions,
    Message,
    ReplyParameters,
    Update,
    User,
)
from telegram.constants import ChatMemberStatus, ChatType, ParseMode
from telegram.error import (
    BadRequest,
    ChatMigrated,
    Forbidden,
    InvalidToken,
    RetryAfter,
    TelegramError,
)
from telegram.ext import Application, CallbackContext, ExtBot, TypeHandler

from bot.app import App
from bot.coach import Reply, plain
from bot.commands import SHARE_WORDS
from bot.delivery import DeliveryError, Target
from dialogs.messages import Inbound, Outbound
from handlers.guard import Malformed, load_json, refuse
from handlers.telegram import keyboards as kb
from handlers.telegram.limiter import FloodLimiter, Limits, retry_after_seconds
from handlers.telegram.render import (
    MAX_CAPTION,
    escape_label,
    keyboard,
    link_keyboard,
    parse_callback,
    utf16_len,
)
from handlers.telegram.replies import (
    PLATFORM,
    AlreadyHandled,
    BoardCache,
    KeyboardClosed,
    Prepared,
    TurnWrites,
)
from store import conversations as conv
from store.db import ConfigError

log = logging.getLogger(__name__)

WEBHOOK_PATH = "/telegram/webhook"
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
ALLOWED_UPDATES = ["message", "edited_message", "channel_post", "callback_query",
                   "my_chat_member"]
NO_PREVIEW = LinkPreviewOptions(is_disabled=True)
GROUPS = (ChatType.GROUP, ChatType.SUPERGROUP)
KEYBOARD_RETENTION = timedelta(days=60)
# a Telegram menu command: 1-32 of a-z, 0-9, _
MENU_COMMAND = re.compile(r"[a-z0-9_]{1,32}")
_SLASH = re.compile(r"^/([^\s@]+)(?:@(\S+))?(.*)$", re.DOTALL)
# controls that show something and leave the question open (the keyboard stays)
REPEATABLE_CONTROLS = frozenset({"tip"})

AnyApplication = Application[Any, Any, Any, Any, Any, Any]
Context = CallbackContext[ExtBot[Any], Any, Any, Any]


class TelegramConfigError(ConfigError, ValueError):
    """Settings that cannot work together; the message says what to fix."""


def lang_hint(user: User | None) -> str | None:
    code = (user.language_code or "").lower() if user is not None else ""
    if code.startswith("zh"):
        return "zh"
    if code.startswith("en"):
        return "en"
    return None


def display_name(user: User) -> str:
    return user.full_name or user.username or str(user.id)


class _ChatLocks:
    """One update at a time per chat, so a chat's turns keep their order; chats run in
    parallel."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users <= 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)


def _remember_missing_sniffio() -> None:
    """httpcore (under PTB's HTTPXRequest) runs `import sniffio` for every Bot API call; when
    sniffio is not installed, each of those searches sys.path again (~40 µs, about ten times an
    update). Record once that it is absent; an installed sniffio is left alone."""
    if "sniffio" not in sys.modules and importlib.util.find_spec("sniffio") is None:
        sys.modules["sniffio"] = None  # type: ignore[assignment]


class TelegramFrontEnd:
    """The Telegram `FrontEnd` (see bot/delivery.py)."""

    platform = PLATFORM

    def __init__(self, app: App, *, limits: Limits | None = None, poll_timeout: float = 10.0,
                 poll_interval: float = 0.0) -> None:
        settings = app.settings
        token = settings.telegram_bot_token
        if not token:
            raise TelegramConfigError("TELEGRAM_BOT_TOKEN is not set")
        if ":" not in token:
            raise TelegramConfigError("TELEGRAM_BOT_TOKEN looks wrong: BotFather's tokens look "
                                      "like 123456789:AA…")
        self.webhook_url = settings.telegram_webhook_url or None
        self.secret = settings.telegram_webhook_secret or None
        if self.webhook_url and not self.secret:
            raise TelegramConfigError(
                "TELEGRAM_WEBHOOK_URL is set but TELEGRAM_WEBHOOK_SECRET is not: set a secret "
                "(1-256 characters A-Z a-z 0-9 _ -) so only Telegram can call the webhook")
        if self.secret and not re.fullmatch(r"[A-Za-z0-9_-]{1,256}", self.secret):
            raise TelegramConfigError("TELEGRAM_WEBHOOK_SECRET may only hold 1-256 characters "
                                      "A-Z a-z 0-9 _ -")
        if self.webhook_url and not self.webhook_url.startswith("https://"):
            raise TelegramConfigError("TELEGRAM_WEBHOOK_URL must be an https:// URL (Telegram "
                                      "calls webhooks over HTTPS only)")
        self.app = app
        self.coach = app.coach
        self.r = app.renderer
        self.default_lang = settings.lang
        self.poll_timeout = poll_timeout
        self.poll_interval = poll_interval
        self.limiter = FloodLimiter(limits)
        _remember_missing_sniffio()
        builder = (Application.builder().token(token).base_url(settings.telegram_api_url)
                   .rate_limiter(self.limiter).concurrent_updates(256))
        if self.webhook_url:
            builder = builder.updater(None)
        self.application: AnyApplication = builder.build()
        self.application.add_handler(TypeHandler(Update, self._dispatch))
        self.application.add_error_handler(self._on_error)
        self.bot = self.application.bot
        self.bot_id = token.split(":", 1)[0]
        self.username = ""
        self._locks = _ChatLocks()
        self._boards = BoardCache()
        # commands that open a dialog: in a group they answer with a link to the private chat
        self.dialog_commands = {*self.coach.flow_commands, "resume"}

    # ---- life cycle ---------------------------------------------------------------------------

    def routes(self) -> Sequence[BaseRoute]:
        return [Route(WEBHOOK_PATH, self._webhook, methods=["POST"])]

    async def start(self) -> None:
        try:
            await self.application.initialize()  # getMe: the bot's id and username
        except InvalidToken as exc:
            raise TelegramConfigError(
                "Telegram refused TELEGRAM_BOT_TOKEN: check it with @BotFather (/token), "
                "and TELEGRAM_API_URL if you run your own Bot API server") from exc
        self.bot_id = str(self.bot.id)
        self.username = self.bot.username or ""
        try:
            await self.set_commands()
        except TelegramError:  # a missing menu must not keep the coach from serving
            log.exception("telegram: setMyCommands failed; the command menu is not set")
        if self.webhook_url:
            await self.bot.set_webhook(self.webhook_url, secret_token=self.secret,
                                       allowed_updates=ALLOWED_UPDATES)
            log.info("telegram: webhook set (%s)", WEBHOOK_PATH)
        else:
            updater = self.application.updater
            assert updater is not None
            # (the Updater deletes any webhook first: Telegram serves one or the other)
            await updater.start_polling(poll_interval=self.poll_interval,
                                        timeout=timedelta(seconds=self.poll_timeout),
                                        allowed_updates=ALLOWED_UPDATES)
            log.info("telegram: polling for updates as @%s", self.username)
        await self.application.start()
        pruned = await self.app.db.run(kb.prune, self.coach.clock() - KEYBOARD_RETENTION)
        if pruned:
            log.info("telegram: forgot %d old keyboards", pruned)

    async def stop(self) -> None:
        updater = self.application.updater
        if updater is not None and updater.running:
            await updater.stop()
        if self.application.running:
            await self.application.stop()
        await self.application.shutdown()

    async def set_commands(self) -> None:
        """The command menu, for private chats and for groups, in every catalog language (and
        the default language for clients in any other)."""
        names = [n for n in self.coach.help_names if MENU_COMMAND.fullmatch(n)]
        private = [n for n in names if n != "channel"]
        for lang in (None, *self.r.languages):
            text_lang = lang or self.default_lang
            for scope, chosen in ((BotCommandScopeAllPrivateChats(), private),
                                  (BotCommandScopeAllGroupChats(), names)):
                commands = [BotCommand(n, self._describe(text_lang, n)) for n in chosen]
                await self.bot.set_my_commands(commands, scope=scope, language_code=lang)

    def _describe(self, lang: str, name: str) -> str:
        try:
            text = plain(self.r.text(lang, f"help.cmd.{name}"))
        except KeyError:
            text = name
        text = " ".join(text.split()) or name
        return text if len(text) <= 256 else text[:255] + "…"

    # ---- the webhook --------------------------------------------------------------------------

    async def _webhook(self, request: Request) -> Response:
        given = request.headers.get(SECRET_HEADER, "")
        if not self.secret or not hmac.compare_digest(given.encode(), self.secret.encode()):
            return JSONResponse({"error": "forbidden"}, status_code=403)
        if not self.application.running:
            return JSONResponse({"error": "starting"}, status_code=503)
        try:  # anything Telegram would not send is refused before any work
            update = self._parse(await request.body())
        except Malformed as bad:
            return refuse("Telegram", bad.reason)
        # Handled before answering: Telegram redelivers what is not acknowledged, and the
        # coach's event ids make a redelivery harmless; errors are answered to the user.
        await self.application.process_update(update)
        return Response(status_code=200)

    def _parse(self, raw: bytes) -> Update:
        """The update in a webhook body, or Malformed."""
        data = load_json(raw)
        if not isinstance(data, dict):
            raise Malformed("the body is not an object")
        update_id = data.get("update_id")
        if type(update_id) is not int or not 0 <= update_id < 2 ** 63:
            raise Malformed("update_id is not a number")
        try:
            update = Update.de_json(data, self.bot)
        except Exception:  # whatever a hostile body makes the parser raise
            update = None
        if update is None:
            raise Malformed("not a Telegram update")
        return update

    # ---- updates ------------------------------------------------------------------------------

    async def _dispatch(self, update: Update, _context: Context) -> None:
        if update.callback_query is not None:
            await self._on_tap(update.callback_query)
        elif update.my_chat_member is not None:
            await self._on_membership(update.my_chat_member)
        elif update.message is not None:
            await self._on_message(update.message, update.update_id)
        elif update.edited_message is not None:
            await self._on_edit(update.edited_message, update.update_id)
        elif update.channel_post is not None:
            await self._on_channel_post(update.channel_post, update.update_id)

    def _event(self, update_id: int) -> str:
        return f"{self.bot_id}:{update_id}"

    def _inbound(self, user: User, chat: Chat, text: str, event_id: str | None, *,
                 shared: bool = False) -> Inbound:
        group = chat.type in GROUPS
        return Inbound(platform=PLATFORM, org_key=self.bot_id, user_key=str(user.id), text=text,
                       user_name=display_name(user), lang_hint=lang_hint(user),
                       event_id=event_id, chat="channel" if group else "private",
                       chat_key=str(chat.id), chat_name=chat.title if group else None,
                       shared=shared and group)

    async def _on_message(self, message: Message, update_id: int) -> None:
        user, chat = message.from_user, message.chat
        if user is None or user.is_bot or chat.type == ChatType.CHANNEL:
            return
        async with self._locks.hold(str(chat.id)):
            if chat.type in GROUPS:
                await self._on_group_message(message, user, chat, update_id)
            else:
                await self._on_private_message(message, user, chat, update_id)

    async def _on_edit(self, message: Message, update_id: int) -> None:
        """An edited message changes nothing: taken as new input it would answer whatever
        question is open now with a correction meant for an earlier one. In a private chat the
        user is told how to change an answer; in a group edits are the members' business."""
        user, chat = message.from_user, message.chat
        if user is None or user.is_bot or chat.type != ChatType.PRIVATE:
            return
        async with self._locks.hold(str(chat.id)):
            known = await self.app.db.run(_once_lang, self.bot_id, str(user.id),
                                          self._event(update_id), self.coach.clock())
            if known is None:
                return  # a redelivery: told once already
            lang = known or lang_hint(user) or self.default_lang
            await self._send(chat.id, [Outbound(self.r.text(lang, "telegram.edited"))],
                             lang=lang, reply_to=message.message_id)

    async def _on_channel_post(self, post: Message, update_id: int) -> None:
        """A post in a channel the bot is an admin of. The coach works in private chats and
        groups (a channel post has no author to answer or check), so posts are ignored, and a
        command for the bot gets a note saying where to talk to it."""
        parsed = self._split_command(post.text or "")
        if parsed is None or parsed[2] == "other":
            return
        word, _arg, whom = parsed
        if whom is None and word.casefold() not in self.coach.commands \
                and word.casefold() != "start":
            return  # some other bot's command
        if not await self.app.db.run(_once, self._event(update_id), self.coach.clock()):
            return
        lang = self.default_lang
        await self._send_link(post.chat.id, self.r.text(lang, "telegram.channel"),
                              self.r.text(lang, "telegram.start.button"), "",
                              reply_to=post.message_id)

    def _split_command(self, text: str) -> tuple[str, str, str | None] | None:
        """`/name@bot args` -> (name, args, whom it names: "us", "other" or None); None for
        text that is not a command."""
        match = _SLASH.match(text.strip())
        if match is None:
            return None
        name, mention, rest = match.groups()
        whom = None if not mention else (
            "us" if mention.casefold() == self.username.casefold() else "other")
        return name, rest.strip(), whom

    async def _on_private_message(self, message: Message, user: User, chat: Chat,
                                  update_id: int) -> None:
        text = message.text
        if text is None:
            lang = await self._lang(user)
            await self._send(chat.id, [Outbound(self.r.text(lang, "telegram.text_only"),
                                                kind="error")], lang=lang)
            return
        parsed = self._split_command(text)
        if parsed is not None:
            name, arg, whom = parsed
            if whom == "other":
                return  # a command for another bot
            if name.casefold() == "start":
                await self._start_command(user, chat, arg, self._event(update_id))
                return
            text = f"/{name} {arg}".strip()
        await self._turn(user, chat, text, self._event(update_id))

    async def _turn(self, user: User, chat: Chat, text: str, event_id: str) -> None:
        """A private message as one unit of work: the coach's turn, the keyboards of its
        replies, and (whoever writes to the bot has not blocked it) a block lifted."""
        writes = self._writes(chat, unblock=str(user.id))
        reply = await self.coach.handle(self._inbound(user, chat, text, event_id), after=writes)
        self._boards.sent(writes.prepared)
        await self._send(chat.id, reply.messages, lang=reply.lang, prepared=writes.prepared)

    def _writes(self, chat: Chat, *, user: User | None = None, answers: str | None = None,
                keeps: str | None = None, unblock: str | None = None,
                event_id: str | None = None) -> TurnWrites:
        """What a turn in `chat` writes for Telegram; with `user`, a group's private replies go
        to their private chat."""
        here = str(chat.id)
        private = str(user.id) if user is not None and chat.type in GROUPS else here

        def route(out: Outbound) -> str:
            return private if out.private else here

        return TurnWrites(bot_id=self.bot_id, now=self.coach.clock(), route=route,
                          answers=answers, keeps=keeps, unblock=unblock, event_id=event_id)

    async def _start_command(self, user: User, chat: Chat, payload: str, event_id: str) -> None:
        """`/start`: a greeting; `/start <payload>` (a deep link): the command it names."""
        line = self.decode_payload(payload) if payload else None
        if line:
            await self._turn(user, chat, line, event_id)
            return
        # one unit of work: handled once, the block (if any) lifted, the greeting's keyboards
        writes = self._writes(chat, unblock=str(user.id), event_id=event_id)
        try:
            reply = await self.coach.greet(self._inbound(user, chat, "", None), after=writes)
        except AlreadyHandled:
            return
        await self._send(chat.id, reply.messages, lang=reply.lang, prepared=writes.prepared)

    async def _on_group_message(self, message: Message, user: User, chat: Chat,
                                update_id: int) -> None:
        parsed = self._split_command(message.text or "")
        if parsed is None or parsed[2] == "other":
            return  # group chatter, or a command for another bot
        word, arg, whom = parsed
        addressed = whom == "us"
        name = self.coach.commands.get(word.casefold())
        if word.casefold() == "start":
            lang = await self._lang(user)
            text = self.r.text(lang, "telegram.start.group")
            await self._send_link(chat.id, text, self.r.text(lang, "telegram.start.button"),
                                  "", reply_to=message.message_id)
            return
        if name is None and word.casefold() in self.app.engine.aliases:
            name = "resume"  # back/skip/tip … belong to a dialog, which lives in private
        if name is None:
            if addressed:  # "/foo@ourbot": tell them what we can do
                await self._group_turn(chat, user, f"/{word}", update_id, message.message_id)
            return
        if name in self.dialog_commands:
            lang = await self._lang(user)
            text = self.r.text(lang, "telegram.go_private", name=display_name(user))
            await self._send_link(chat.id, text, self.r.text(lang, "telegram.go_private.button"),
                                  self.start_payload(name), reply_to=message.message_id)
            return
        # a look-up answers the asker in private; `/account Daqing share` posts it here
        words = arg.split()
        shared = bool(words) and words[-1].casefold() in SHARE_WORDS
        if shared:
            arg = " ".join(words[:-1])
        line = f"/{word} {arg}".strip()
        await self._group_turn(chat, user, line, update_id, message.message_id,
                               payload=(name, arg), shared=shared)

    async def _group_turn(self, chat: Chat, user: User, line: str, update_id: int,
                          reply_to: int, *, payload: tuple[str, str] | None = None,
                          shared: bool = False) -> None:
        writes = self._writes(chat, user=user)
        reply = await self.coach.handle(self._inbound(user, chat, line, self._event(update_id),
                                                      shared=shared), after=writes)
        self._boards.sent(writes.prepared)
        await self._group_reply(chat, user, reply, reply_to, payload=payload,
                                prepared=writes.prepared)

    async def _group_reply(self, chat: Chat, user: User, reply: Reply, reply_to: int, *,
                           payload: tuple[str, str] | None = None,
                           prepared: Prepared | None = None) -> None:
        """Post a reply in a group; what is private goes to the asker's private chat."""
        public = [m for m in reply.messages if not m.private]
        private = [m for m in reply.messages if m.private]
        if public:
            await self._send(chat.id, public, lang=reply.lang, reply_to=reply_to,
                             prepared=prepared)
        if not private:
            return
        name = display_name(user)
        try:
            await self._send(user.id, private, lang=reply.lang, prepared=prepared)
        except (Forbidden, BadRequest) as exc:
            if isinstance(exc, BadRequest) and "chat not found" not in exc.message.lower():
                raise
            # they never opened a chat with the bot (or blocked it): offer the deep link
            start = self.start_payload(*payload) if payload else ""
            await self._send_link(chat.id, self.r.text(reply.lang, "telegram.dm_blocked",
                                                       name=name),
                                  self.r.text(reply.lang, "telegram.start.button"), start,
                                  reply_to=reply_to)
            return
        await self._send(chat.id, [Outbound(self.r.text(reply.lang, "telegram.sent_private",
                                                        name=name))],
                         lang=reply.lang, reply_to=reply_to)

    async def _on_tap(self, query: CallbackQuery) -> None:
        message = query.message
        if message is None:
            await query.answer()
            return
        chat = message.chat
        async with self._locks.hold(str(chat.id)):
            answered = False
            try:
                answered = await self._tap(query, message.message_id, chat)
            finally:
                if not answered:
                    with suppress(TelegramError):
                        await query.answer()

    async def _tap(self, query: CallbackQuery, message_id: int, chat: Chat) -> bool:
        """Handle a tap; True when the query was already answered (with a text)."""
        tap = parse_callback(query.data)
        user = query.from_user
        if tap is None or not _is_button_of(query) or (
                chat.type == ChatType.PRIVATE and chat.id != user.id):
            # data that no button of this message holds, or a tap in someone else's private
            # chat (forged): it answers nothing and leaves the message, and its live keyboard,
            # as they are
            return await self._stale_tap(query, message_id, chat, None, drop=False)
        if tap.op == "t":  # tick/untick: one unit of work, no turn
            ticked = await self.app.db.run(kb.toggle, tap.key, tap.index, str(chat.id))
            if ticked is None or ticked.closed or not ticked.multi:
                return await self._stale_tap(query, message_id, chat, ticked)
            markup = keyboard(ticked.key, ticked.options, ticked.controls, multi=True,
                              selected=ticked.selected,
                              done_label=plain(self.r.text(ticked.lang, "telegram.done")),
                              question=tap.question)
            with suppress(BadRequest):  # "message is not modified" after a fast re-tap
                await self.bot.edit_message_reply_markup(chat.id, message_id,
                                                         reply_markup=markup)
            return False
        # what a button stands for never changes: this process's cache spares the read, except
        # for Done, whose ticks are read fresh; whether it is still open is checked in the turn
        board = self._boards.get(tap.key) if tap.op != "d" else None
        if board is None:
            board = await self.app.db.run(kb.load, tap.key)
        if board is None or board.chat_id != str(chat.id):
            return await self._stale_tap(query, message_id, chat, board, drop=False)
        if board.closed:
            return await self._stale_tap(query, message_id, chat, board)
        if tap.op == "d":
            if not board.selected:
                await query.answer(plain(self.r.text(board.lang, "telegram.pick_first")),
                                   show_alert=True)
                return True
            picked = [board.options[i] for i in board.selected if i < len(board.options)]
            value = ", ".join(v for v, _ in picked)
            shown = Markup("、" if board.lang == "zh" else ", ").join(
                Markup(escape_label(label)) for _, label in picked)
        else:
            pool = board.options if tap.op == "a" else board.controls
            if not 0 <= tap.index < len(pool):
                return False
            value, label = pool[tap.index]
            shown = Markup(escape_label(label))
        repeatable = tap.op == "c" and value in REPEATABLE_CONTROLS
        # one answer per keyboard: the turn closes it (a double tap finds it closed, and
        # carries the same event id besides); a tip leaves it open
        event = f"{self.bot_id}:tap:{board.key}" + (f":{tap.index}" if repeatable else "")
        writes = self._writes(chat, user=user, keeps=board.key if repeatable else None,
                              answers=None if repeatable else board.key)
        try:
            reply = await self.coach.handle(
                replace(self._inbound(user, chat, value, event), pressed=True,
                        key=tap.question), after=writes)
        except KeyboardClosed:
            self._boards.forget(board.key)
            return await self._stale_tap(query, message_id, chat, board)
        if reply.refused is not None:
            # not the question open now (or not the tapper's), or not one of its answers:
            # nothing changed; in the asker's own chat a closed question loses its buttons
            await query.answer(plain(reply.messages[0].text)[:200], show_alert=True)
            if reply.refused == "closed" and chat.type == ChatType.PRIVATE:
                await self.app.db.run(kb.close, board.key)
                self._boards.forget(board.key)
                await self._drop_keyboard(chat.id, message_id)
            return True
        if not repeatable:
            self._boards.forget(board.key)
        self._boards.sent(writes.prepared)
        await query.answer()
        if not repeatable:
            # (board.text is Telegram HTML already: a str + Markup would escape it again)
            edited = Markup(board.text) + "\n\n" + self.r.text(board.lang, "telegram.chosen",
                                                               answer=shown)
            await self._show_answer(chat.id, message_id, edited)
        if chat.type in GROUPS:
            await self._group_reply(chat, user, reply, message_id, prepared=writes.prepared)
        else:
            await self._send(chat.id, reply.messages, lang=reply.lang, prepared=writes.prepared)
        return True

    async def _stale_tap(self, query: CallbackQuery, message_id: int, chat: Chat,
                         board: kb.Keyboard | None, *, drop: bool = True) -> bool:
        """A tap on a keyboard that no longer counts: say so and (`drop`: it is this message's
        keyboard, closed) take the buttons away."""
        lang = board.lang if board is not None else await self._lang(query.from_user)
        await query.answer(plain(self.r.text(lang, "telegram.stale")))
        if drop:
            await self._drop_keyboard(chat.id, message_id)
        return True

    async def _show_answer(self, chat_id: int, message_id: int, text: str) -> None:
        """The question with the chosen answer under it, and no keyboard any more."""
        if utf16_len(text) <= 4096 and text.strip():
            with suppress(BadRequest):
                await self.bot.edit_message_text(text, chat_id, message_id,
                                                 parse_mode=ParseMode.HTML,
                                                 link_preview_options=NO_PREVIEW)
                return
        await self._drop_keyboard(chat_id, message_id)

    async def _drop_keyboard(self, chat_id: int, message_id: int) -> None:
        with suppress(BadRequest):  # already gone ("message is not modified")
            await self.bot.edit_message_reply_markup(chat_id, message_id, reply_markup=None)

    async def _on_membership(self, change: ChatMemberUpdated) -> None:
        """The bot blocked/unblocked in a private chat, or removed from a group."""
        status = change.new_chat_member.status
        chat = change.chat
        now = self.coach.clock()
        if chat.type == ChatType.PRIVATE:
            if status == ChatMemberStatus.BANNED:
                await self.app.db.run(kb.mark_user_blocked, self.bot_id, str(chat.id), now)
            elif status == ChatMemberStatus.MEMBER:
                await self.app.db.run(kb.mark_user_blocked, self.bot_id, str(chat.id), None)
        elif status in (ChatMemberStatus.LEFT, ChatMemberStatus.BANNED):
            await self.app.db.run(kb.deactivate_channel, self.bot_id, str(chat.id))

    async def _lang(self, user: User | None) -> str:
        """The language for a text of this front end's own: the user's, else their
        Telegram app's, else the default."""
        if user is not None:
            known = await self.app.db.run(kb.speaker_lang, self.bot_id, str(user.id))
            if known:
                return known
        return lang_hint(user) or self.default_lang

    # ---- errors: one place, a polite translated answer and a logged reference ------------

    async def _on_error(self, update: object, context: Context) -> None:
        error = context.error
        chat = update.effective_chat if isinstance(update, Update) else None
        user = update.effective_user if isinstance(update, Update) else None
        if isinstance(error, Forbidden) and chat is not None:
            # nobody left to tell: the user blocked the bot, or the bot left the group
            if chat.type == ChatType.PRIVATE:
                await self.app.db.run(kb.mark_user_blocked, self.bot_id, str(chat.id),
                                      self.coach.clock())
            else:
                await self.app.db.run(kb.deactivate_channel, self.bot_id, str(chat.id))
            log.info("telegram: chat %s cannot be written to (%s); recorded", chat.id,
                     error.message)
            return
        ref = uuid.uuid4().hex[:8]
        update_id = update.update_id if isinstance(update, Update) else None
        log.error("telegram update %s failed (ref %s)", update_id, ref, exc_info=error)
        if chat is None:
            return
        lang = lang_hint(user) or self.default_lang
        try:
            await self._send(chat.id, [self.coach.error_reply(lang, ref)], lang=lang)
        except TelegramError:
            log.warning("telegram: could not tell chat %s about error %s", chat.id, ref)

    # ---- sending --------------------------------------------------------------------------

    def start_payload(self, name: str, arg: str = "") -> str:
        """A `t.me/<bot>?start=` payload (A-Z a-z 0-9 _ -, at most 64) for a command line."""
        if not arg:
            return name
        encoded = base64.urlsafe_b64encode(f"{name} {arg}".encode()).decode().rstrip("=")
        return f"q-{encoded}" if len(encoded) <= 62 else name

    def decode_payload(self, payload: str) -> str | None:
        """The command line a deep-link payload stands for, or None."""
        if payload.startswith("q-"):
            raw = payload[2:]
            try:
                line = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode()
            except (binascii.Error, UnicodeDecodeError):
                return None
            return f"/{line}"
        if payload in self.coach.command_names:
            return f"/{payload}"
        return None

    def link(self, payload: str) -> str:
        base = f"https://t.me/{self.username}"
        return f"{base}?start={payload}" if payload else base

    async def _send_link(self, chat_id: int, text: str, button: str, payload: str, *,
                         reply_to: int | None = None) -> None:
        await self.bot.send_message(chat_id, text, parse_mode=ParseMode.HTML,
                                    reply_markup=link_keyboard(button, self.link(payload)),
                                    link_preview_options=NO_PREVIEW,
                                    reply_parameters=_reply_to(reply_to))

    async def _send(self, chat_id: int, messages: Sequence[Outbound], *, lang: str,
                    reply_to: int | None = None, rate_limit_args: dict[str, Any] | None = None,
                    prepared: Prepared | None = None) -> list[str]:
        """Send `messages` in order: text in pieces that fit (the keyboard on the last),
        then attachments. Returns the ids of the messages posted. `prepared`: the messages as
        a turn rendered them and recorded their keyboards; any other message is rendered here,
        its keyboards recorded in one unit of work before anything is sent."""
        chat = str(chat_id)
        todo = [out for out in messages
                if prepared is None or id(out) not in prepared.by_message]
        if todo:
            extra = Prepared()
            for out in todo:
                extra.add(out, chat, lang)
            if extra.boards or extra.asked:
                await self.app.db.run(extra.record, self.bot_id, self.coach.clock())
                self._boards.sent(extra)
            prepared = extra if prepared is None else Prepared(
                {**prepared.by_message, **extra.by_message})
        ids: list[str] = []
        done_label = ""
        for out in messages:
            assert prepared is not None
            made = prepared.by_message[id(out)]
            markup: InlineKeyboardMarkup | None = None
            if made.board is not None:
                done_label = done_label or plain(self.r.text(lang, "telegram.done"))
                markup = keyboard(made.board.key, made.board.options, made.board.controls,
                                  multi=made.board.multi, done_label=done_label,
                                  question=made.board.question)
            last = len(made.pieces) - 1
            for i, piece in enumerate(made.pieces):
                sent = await self.bot.send_message(
                    chat_id, piece, parse_mode=ParseMode.HTML,
                    reply_markup=markup if i == last else None,
                    link_preview_options=NO_PREVIEW,
                    reply_parameters=_reply_to(reply_to if i == 0 else None),
                    rate_limit_args=rate_limit_args)
                ids.append(str(sent.message_id))
            for attachment in out.attachments:
                caption = html.escape(attachment.title, quote=False)[:MAX_CAPTION] or None
                document = InputFile(attachment.data, filename=attachment.filename)
                if attachment.mime == "image/png":
                    sent = await self.bot.send_photo(chat_id, document, caption=caption,
                                                     parse_mode=ParseMode.HTML,
                                                     rate_limit_args=rate_limit_args)
                else:
                    sent = await self.bot.send_document(chat_id, document, caption=caption,
                                                        parse_mode=ParseMode.HTML,
                                                        rate_limit_args=rate_limit_args)
                ids.append(str(sent.message_id))
        return ids

    # ---- the outbox's way out -------------------------------------------------------------

    async def deliver(self, target: Target, messages: Sequence[Outbound]) -> list[str]:
        """Post to a group or a user's private chat for the outbox. Flood control becomes
        `DeliveryError(retry_after=…)` (the outbox reschedules); a user who blocked the bot or
        a group that is gone is recorded and the error is permanent."""
        if target.kind == "channel":
            dropped = [m for m in messages if m.private]
            if dropped:
                log.error("telegram: %d private message(s) for group %s not posted there",
                          len(dropped), target.key)
            messages = [m for m in messages if not m.private]
        try:
            chat_id = int(target.key)
        except ValueError as exc:
            raise DeliveryError(f"not a Telegram chat id: {target.key!r}", permanent=True) from exc
        reply_to = int(target.thread) if target.thread and target.thread.isdigit() else None
        no_retry = {"retries": 0}
        try:
            try:
                return await self._send(chat_id, messages, lang=self.default_lang,
                                        reply_to=reply_to, rate_limit_args=no_retry)
            except ChatMigrated as exc:  # a group became a supergroup: follow it, once
                new_id = int(exc.new_chat_id)
                await self.app.db.run(kb.move_channel, self.bot_id, str(chat_id), str(new_id))
                return await self._send(new_id, messages, lang=self.default_lang,
                                        rate_limit_args=no_retry)
        except RetryAfter as exc:
            raise DeliveryError("telegram flood control",
                                retry_after=retry_after_seconds(exc)) from exc
        except Forbidden as exc:
            await self._unreachable(target)
            raise DeliveryError(exc.message, permanent=True) from exc
        except BadRequest as exc:
            if "chat not found" in exc.message.lower():
                await self._unreachable(target)
            raise DeliveryError(exc.message, permanent=True) from exc
        except TelegramError as exc:  # network trouble, Telegram's 5xx: worth another try
            raise DeliveryError(exc.message) from exc

    async def _unreachable(self, target: Target) -> None:
        now = self.coach.clock()
        if target.kind == "user":
            await self.app.db.run(kb.mark_user_blocked, self.bot_id, target.key, now)
        else:
            await self.app.db.run(kb.deactivate_channel, self.bot_id, target.key)
        log.warning("telegram: %s %s cannot be reached any more; recorded", target.kind,
                    target.key)


def _is_button_of(query: CallbackQuery) -> bool:
    """Whether the query's data is that of a button of the message tapped (Telegram sends the
    message with its keyboard as it stands; one too old to be shown is taken on trust)."""
    message = query.message
    if not isinstance(message, Message):
        return True
    markup = message.reply_markup
    return markup is not None and any(button.callback_data == query.data
                                      for row in markup.inline_keyboard for button in row)


def _reply_to(message_id: int | None) -> ReplyParameters | None:
    if message_id is None:
        return None
    return ReplyParameters(message_id=message_id, allow_sending_without_reply=True)


def _once(session: Session, event_id: str, now: datetime) -> bool:
    return conv.first_time(session, PLATFORM, event_id, now)


def _once_lang(session: Session, bot_id: str, user_key: str, event_id: str,
               now: datetime) -> str | None:
    """None if the update was handled already; else the user's language ("" if unknown)."""
    if not conv.first_time(session, PLATFORM, event_id, now):
        return None
    return kb.speaker_lang(session, bot_id, user_key) or ""
