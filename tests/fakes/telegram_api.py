"""A local fake Telegram Bot API server for tests: real HTTP on a free port, every call recorded.

python-telegram-bot (and anything else) talks to it through `base_url` (`TELEGRAM_API_URL`), as it
would to api.telegram.org or a self-hosted Bot API server. The server runs aiohttp in a thread of
its own, so it serves async tests, sync tests and subprocesses alike.

    with FakeTelegramAPI() as api:
        settings = Settings(TELEGRAM_BOT_TOKEN=api.token, TELEGRAM_API_URL=api.base_url)
        api.push_update(api.message_update(api.user(42), "/start"))   # for getUpdates
        api.fail_next(1, "429", method="sendMessage", retry_after=2)  # script a failure
        await api.wait_until(lambda: api.calls_to("sendMessage"))
        api.calls_to("sendMessage")[-1].params["text"]

It answers getMe, setWebhook, deleteWebhook, getWebhookInfo, getUpdates (queued updates, long-poll
`timeout`, `offset` confirms; 409 while a webhook is set, as Telegram does), setMyCommands,
getMyCommands, sendMessage, editMessageText, editMessageReplyMarkup (400 "message is not
modified" when nothing changes, as Telegram does), answerCallbackQuery, sendPhoto and
sendDocument (multipart), sendChatAction. Unknown methods get 404. It keeps the messages it was
sent per chat (text as sent, in `html`, and as Telegram would show it, in `text`) so a test can
tap their buttons (`callback_update`).

Failures are scripted with `fail_next(n, kind, method=..., chat_id=...)`: "429" (with
`parameters.retry_after`), "403" (bot was blocked by the user), "kicked" (403, bot was kicked
from the group chat), "400" (chat not found) or "500", for the next `n` matching calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import itertools
import json
import re
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import BodyPartReader, web

from tests.fakes.base import ThreadedServer

# parameters python-telegram-bot sends JSON-encoded inside form fields
JSON_FIELDS = frozenset({
    "reply_markup", "commands", "scope", "allowed_updates", "entities", "caption_entities",
    "link_preview_options", "reply_parameters", "media",
})
# calls a scripted failure never hits unless it names them
NEVER_FAILED_BY_DEFAULT = frozenset({"getUpdates", "getMe"})

ERRORS: dict[str, tuple[int, str]] = {
    "429": (429, "Too Many Requests: retry after {retry_after}"),
    "403": (403, "Forbidden: bot was blocked by the user"),
    "kicked": (403, "Forbidden: bot was kicked from the group chat"),
    "400": (400, "Bad Request: chat not found"),
    "500": (500, "Internal Server Error"),
}

_TAGS = re.compile(r"</?[a-z]+[^>]*>")


@dataclass
class Call:
    """One request the server received."""

    method: str
    params: dict[str, Any]
    files: dict[str, tuple[str, bytes, str]] = field(default_factory=dict)
    at: float = 0.0
    failed: str | None = None  # the scripted failure it got, if any

    @property
    def chat_id(self) -> str | None:
        value = self.params.get("chat_id")
        return None if value is None else str(value)


@dataclass
class _Failure:
    remaining: int
    kind: str
    method: str | None
    chat_id: str | None
    retry_after: int


class FakeTelegramAPI(ThreadedServer):
    """The fake server. `start()`/`stop()` or use it as a (sync) context manager."""

    thread_name = "fake-telegram-api"

    def __init__(self, *, bot_id: int = 7_000_001, username: str = "salescoach_test_bot",
                 host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__()
        self.bot_id = bot_id
        self.username = username
        self.token = f"{bot_id}:TEST-{bot_id}-token"
        self.host = host
        self.port = port
        self.calls: list[Call] = []
        self._index: dict[tuple[str, str | None], list[Call]] = {}  # (method, chat) -> calls
        self.messages: dict[str, dict[int, dict[str, Any]]] = {}  # chat id -> message id -> msg
        self.chats: dict[str, dict[str, Any]] = {}
        self.webhook: dict[str, Any] = {}
        self._updates: list[dict[str, Any]] = []
        self._update_ids = itertools.count(1000)
        self._message_ids = itertools.count(1)
        self._callback_ids = itertools.count(1)
        self._failures: list[_Failure] = []
        self._lock = threading.Lock()
        self._runner: web.AppRunner | None = None
        self._new_update: asyncio.Event | None = None

    # ---- life cycle ------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """The `base_url` for python-telegram-bot (`TELEGRAM_API_URL`)."""
        return f"http://{self.host}:{self.port}/bot"

    async def _serve(self) -> None:
        self._new_update = asyncio.Event()
        app = web.Application(client_max_size=60 * 1024 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        server = site._server
        assert server is not None
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1]

    async def _shutdown(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    # ---- scripting -------------------------------------------------------------------------

    def push_update(self, update: dict[str, Any]) -> int:
        """Queue an update for getUpdates; returns its update_id."""
        with self._lock:
            self._updates.append(update)
            self._remember_chat(update)
        if self._loop is not None and self._new_update is not None:
            self._loop.call_soon_threadsafe(self._new_update.set)
        return int(update["update_id"])

    def fail_next(self, n: int, kind: str, *, method: str | None = None,
                  chat_id: int | str | None = None, retry_after: int = 1) -> None:
        """The next `n` calls (of `method`, to `chat_id`, when given) fail with `kind`."""
        if kind not in ERRORS:
            raise ValueError(f"unknown failure {kind!r}; one of {sorted(ERRORS)}")
        with self._lock:
            self._failures.append(_Failure(n, kind, method,
                                           None if chat_id is None else str(chat_id),
                                           retry_after))

    def reset_calls(self) -> None:
        with self._lock:
            self.calls.clear()
            self._index.clear()

    # ---- reading what happened ---------------------------------------------------------------

    def calls_to(self, method: str, *, chat_id: int | str | None = None,
                 ok: bool | None = None) -> list[Call]:
        with self._lock:
            if chat_id is not None:
                found = list(self._index.get((method, str(chat_id)), ()))
            else:
                found = [c for c in self.calls if c.method == method]
        if ok is not None:
            found = [c for c in found if (c.failed is None) == ok]
        return found

    def sent(self, chat_id: int | str) -> list[dict[str, Any]]:
        """The messages in a chat, in order, as they stand now (edits applied)."""
        with self._lock:
            return [dict(m) for _id, m in sorted(self.messages.get(str(chat_id), {}).items())]

    def last_message(self, chat_id: int | str) -> dict[str, Any]:
        return self.sent(chat_id)[-1]

    async def wait_until(self, predicate: Callable[[], Any], timeout: float = 10.0) -> Any:
        """Wait (without blocking the caller's event loop) until `predicate()` is truthy."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"condition not met within {timeout}s; calls: "
                                   f"{[c.method for c in self.calls][-20:]}")
            await asyncio.sleep(0.01)

    def wait_sync(self, predicate: Callable[[], Any], timeout: float = 20.0) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"condition not met within {timeout}s; calls: "
                                   f"{[c.method for c in self.calls][-20:]}")
            time.sleep(0.02)

    # ---- building updates --------------------------------------------------------------------

    @staticmethod
    def user(user_id: int, *, first_name: str = "Li", last_name: str | None = "Lei",
             language_code: str | None = "en", username: str | None = None) -> dict[str, Any]:
        user: dict[str, Any] = {"id": user_id, "is_bot": False, "first_name": first_name}
        if last_name:
            user["last_name"] = last_name
        if language_code:
            user["language_code"] = language_code
        if username:
            user["username"] = username
        return user

    @staticmethod
    def private_chat(user: dict[str, Any]) -> dict[str, Any]:
        chat = {"id": user["id"], "type": "private", "first_name": user["first_name"]}
        if user.get("last_name"):
            chat["last_name"] = user["last_name"]
        return chat

    @staticmethod
    def group_chat(chat_id: int, title: str = "Sales team") -> dict[str, Any]:
        return {"id": chat_id, "type": "supergroup", "title": title}

    def next_update_id(self) -> int:
        return next(self._update_ids)

    def message_update(self, user: dict[str, Any], text: str, *,
                       chat: dict[str, Any] | None = None,
                       update_id: int | None = None) -> dict[str, Any]:
        """A text message from `user` (in their private chat unless `chat` is given); a leading
        /command gets its bot_command entity, as Telegram sends it."""
        chat = chat or self.private_chat(user)
        with self._lock:
            self.chats[str(chat["id"])] = chat
        message: dict[str, Any] = {
            "message_id": next(self._message_ids), "date": int(time.time()), "chat": chat,
            "from": user, "text": text,
        }
        command = re.match(r"/[A-Za-z0-9_]+(@[A-Za-z0-9_]+)?", text)
        if command:
            message["entities"] = [{"type": "bot_command", "offset": 0,
                                    "length": _utf16_len(command.group(0))}]
        return {"update_id": update_id if update_id is not None else self.next_update_id(),
                "message": message}

    def edited_update(self, update: dict[str, Any], text: str) -> dict[str, Any]:
        """A new update: the message of `update`, edited to read `text`."""
        message = {**update["message"], "text": text, "edit_date": int(time.time())}
        message.pop("entities", None)
        return {"update_id": self.next_update_id(), "edited_message": message}

    @staticmethod
    def channel_chat(chat_id: int, title: str = "Sales news") -> dict[str, Any]:
        return {"id": chat_id, "type": "channel", "title": title}

    def channel_post_update(self, chat: dict[str, Any], text: str) -> dict[str, Any]:
        """A post in a channel (signed by the channel: no `from`)."""
        with self._lock:
            self.chats[str(chat["id"])] = chat
        post: dict[str, Any] = {"message_id": next(self._message_ids), "date": int(time.time()),
                                "chat": chat, "sender_chat": chat, "text": text}
        command = re.match(r"/[A-Za-z0-9_]+(@[A-Za-z0-9_]+)?", text)
        if command:
            post["entities"] = [{"type": "bot_command", "offset": 0,
                                 "length": _utf16_len(command.group(0))}]
        return {"update_id": self.next_update_id(), "channel_post": post}

    def callback_update(self, user: dict[str, Any], message: dict[str, Any], data: str, *,
                        update_id: int | None = None) -> dict[str, Any]:
        """A tap on a button (its callback_data `data`) of a message the bot sent."""
        shown = {k: v for k, v in message.items() if k != "html"}
        return {
            "update_id": update_id if update_id is not None else self.next_update_id(),
            "callback_query": {
                "id": f"cb{next(self._callback_ids)}", "from": user, "message": shown,
                "chat_instance": f"ci{message['chat']['id']}", "data": data,
            },
        }

    @staticmethod
    def buttons(message: dict[str, Any]) -> list[dict[str, Any]]:
        """The inline buttons of a message, row by row flattened."""
        markup = message.get("reply_markup") or {}
        return [button for row in markup.get("inline_keyboard", []) for button in row]

    def tap(self, user: dict[str, Any], message: dict[str, Any],
            text: str) -> dict[str, Any]:
        """The update for tapping the button labelled `text` (exactly, or after a ✓/☐ mark)."""
        for button in self.buttons(message):
            label = button["text"]
            if label == text or re.sub(r"^[✓☐✅] ?", "", label) == text:
                return self.callback_update(user, message, button["callback_data"])
        raise AssertionError(f"no button {text!r} in {[b['text'] for b in self.buttons(message)]}")

    # ---- the server ----------------------------------------------------------------------------

    def _remember_chat(self, update: dict[str, Any]) -> None:
        for key in ("message", "edited_message", "channel_post"):
            if key in update:
                chat = update[key]["chat"]
                self.chats[str(chat["id"])] = chat

    async def _params(self, request: web.Request) -> tuple[dict[str, Any],
                                                             dict[str, tuple[str, bytes, str]]]:
        params: dict[str, Any] = {}
        files: dict[str, tuple[str, bytes, str]] = {}
        if request.content_type == "application/json":
            raw = await request.read()
            params = json.loads(raw) if raw else {}
        elif request.content_type.startswith("multipart/"):
            reader = await request.multipart()
            while True:
                part = await reader.next()
                if part is None:
                    break
                assert isinstance(part, BodyPartReader)
                name = part.name or ""
                if part.filename is not None:
                    data = bytes(await part.read(decode=False))
                    files[name] = (part.filename, data,
                                   part.headers.get("Content-Type", "application/octet-stream"))
                else:
                    params[name] = await part.text()
        else:
            form = await request.post()
            params = {k: v for k, v in form.items() if isinstance(v, str)}
        for key in list(params):
            if key in JSON_FIELDS and isinstance(params[key], str):
                params[key] = json.loads(params[key])
        return params, files

    def _scripted_failure(self, method: str, params: dict[str, Any]) -> _Failure | None:
        chat = params.get("chat_id")
        for failure in self._failures:
            if failure.remaining <= 0:
                continue
            if failure.method is None and method in NEVER_FAILED_BY_DEFAULT:
                continue
            if failure.method is not None and failure.method != method:
                continue
            if failure.chat_id is not None and failure.chat_id != str(chat):
                continue
            failure.remaining -= 1
            return failure
        return None

    async def _handle(self, request: web.Request) -> web.Response:
        try:
            return await self._handle_call(request)
        except Exception as exc:  # a bug in the fake: say so loudly, in Telegram's format
            traceback.print_exc()
            return _error(500, f"fake Bot API crashed: {exc!r}")

    async def _handle_call(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            return _error(401, "Unauthorized")
        method = request.match_info["method"]
        params, files = await self._params(request)
        call = Call(method=method, params=params, files=files, at=time.monotonic())
        with self._lock:
            failure = self._scripted_failure(method, params)
            if failure is not None:
                call.failed = failure.kind
            self.calls.append(call)
            self._index.setdefault((method, call.chat_id), []).append(call)
        if failure is not None:
            status, description = ERRORS[failure.kind]
            body: dict[str, Any] = {"ok": False, "error_code": status,
                                    "description": description.format(
                                        retry_after=failure.retry_after)}
            if failure.kind == "429":
                body["parameters"] = {"retry_after": failure.retry_after}
            return web.json_response(body, status=status)
        handler = getattr(self, f"_m_{method}", None)
        if handler is None:
            return _error(404, "Not Found: method not found")
        result = await handler(params, files)
        if isinstance(result, web.Response):
            return result
        return web.json_response({"ok": True, "result": result})

    # ---- methods -------------------------------------------------------------------------------

    def _bot_user(self) -> dict[str, Any]:
        return {"id": self.bot_id, "is_bot": True, "first_name": "Sales Coach",
                "username": self.username, "can_join_groups": True,
                "can_read_all_group_messages": False, "supports_inline_queries": False}

    async def _m_getMe(self, _p: dict[str, Any], _f: Any) -> Any:
        return self._bot_user()

    async def _m_setWebhook(self, p: dict[str, Any], _f: Any) -> Any:
        if not str(p.get("url", "")).startswith("https://"):
            return _error(400, "Bad Request: bad webhook: An HTTPS URL must be provided")
        with self._lock:
            self.webhook = dict(p)
        return True

    async def _m_deleteWebhook(self, p: dict[str, Any], _f: Any) -> Any:
        with self._lock:
            self.webhook = {}
            if str(p.get("drop_pending_updates", "")).lower() == "true":
                self._updates.clear()
        return True

    async def _m_getWebhookInfo(self, _p: dict[str, Any], _f: Any) -> Any:
        return {"url": self.webhook.get("url", ""), "has_custom_certificate": False,
                "pending_update_count": len(self._updates)}

    async def _m_getUpdates(self, p: dict[str, Any], _f: Any) -> Any:
        if self.webhook:
            return _error(409, "Conflict: can't use getUpdates method while webhook is active; "
                               "use deleteWebhook to delete the webhook first")
        offset = int(p.get("offset") or 0)
        limit = int(p.get("limit") or 100)
        timeout = float(p.get("timeout") or 0)
        deadline = time.monotonic() + timeout
        assert self._new_update is not None
        while True:
            with self._lock:
                if offset:
                    self._updates = [u for u in self._updates if u["update_id"] >= offset]
                ready = self._updates[:limit]
                if not ready:
                    self._new_update.clear()
            if ready or time.monotonic() >= deadline:
                return ready
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._new_update.wait(),
                                       max(0.0, deadline - time.monotonic()))

    async def _m_setMyCommands(self, _p: dict[str, Any], _f: Any) -> Any:
        return True

    async def _m_getMyCommands(self, p: dict[str, Any], _f: Any) -> Any:
        for call in reversed(self.calls_to("setMyCommands", ok=True)):
            if (call.params.get("scope") == p.get("scope")
                    and call.params.get("language_code") == p.get("language_code")):
                return call.params.get("commands", [])
        return []

    async def _m_sendChatAction(self, _p: dict[str, Any], _f: Any) -> Any:
        return True

    async def _m_answerCallbackQuery(self, _p: dict[str, Any], _f: Any) -> Any:
        return True

    def _chat(self, chat_id: str) -> dict[str, Any]:
        known = self.chats.get(chat_id)
        if known is not None:
            return known
        if chat_id.startswith("-"):
            return {"id": int(chat_id), "type": "supergroup", "title": "Group"}
        return {"id": int(chat_id), "type": "private", "first_name": "User"}

    def _store(self, chat_id: str, fields: dict[str, Any], p: dict[str, Any]) -> dict[str, Any]:
        message: dict[str, Any] = {"message_id": next(self._message_ids),
                                   "date": int(time.time()), "chat": self._chat(chat_id),
                                   "from": self._bot_user(), **fields}
        if p.get("reply_markup"):
            message["reply_markup"] = p["reply_markup"]
        with self._lock:
            self.messages.setdefault(chat_id, {})[message["message_id"]] = message
        return message

    async def _m_sendMessage(self, p: dict[str, Any], _f: Any) -> Any:
        text = str(p.get("text", ""))
        if not text.strip():
            return _error(400, "Bad Request: message text is empty")
        if _utf16_len(_shown(text, p)) > 4096:
            return _error(400, "Bad Request: message is too long")
        if p.get("parse_mode") == "HTML" and not _balanced(text):
            return _error(400, "Bad Request: can't parse entities: unbalanced tags")
        return self._store(str(p["chat_id"]), {"text": _shown(text, p), "html": text}, p)

    def _find(self, p: dict[str, Any]) -> dict[str, Any] | None:
        with self._lock:
            return self.messages.get(str(p.get("chat_id")), {}).get(int(p.get("message_id", 0)))

    async def _m_editMessageText(self, p: dict[str, Any], _f: Any) -> Any:
        message = self._find(p)
        if message is None:
            return _error(400, "Bad Request: message to edit not found")
        text = str(p.get("text", ""))
        markup = p.get("reply_markup")
        if text == message.get("html") and markup == message.get("reply_markup"):
            return _error(400, "Bad Request: message is not modified: specified new message "
                               "content and reply markup are exactly the same")
        with self._lock:
            message["html"] = text
            message["text"] = _shown(text, p)
            if markup:
                message["reply_markup"] = markup
            else:
                message.pop("reply_markup", None)
            message["edit_date"] = int(time.time())
        return message

    async def _m_editMessageReplyMarkup(self, p: dict[str, Any], _f: Any) -> Any:
        message = self._find(p)
        if message is None:
            return _error(400, "Bad Request: message to edit not found")
        markup = p.get("reply_markup")
        if markup == message.get("reply_markup") or (not markup
                                                     and not message.get("reply_markup")):
            return _error(400, "Bad Request: message is not modified: specified new message "
                               "content and reply markup are exactly the same")
        with self._lock:
            if markup:
                message["reply_markup"] = markup
            else:
                message.pop("reply_markup", None)
            message["edit_date"] = int(time.time())
        return message

    async def _m_sendDocument(self, p: dict[str, Any], f: dict[str, Any]) -> Any:
        if "document" not in f:
            return _error(400, "Bad Request: there is no document in the request")
        name, data, mime = f["document"]
        document = {"file_id": f"doc{len(data)}", "file_unique_id": f"u{len(data)}",
                    "file_name": name, "mime_type": mime, "file_size": len(data)}
        fields: dict[str, Any] = {"document": document}
        if p.get("caption"):
            fields["caption"] = _shown(str(p["caption"]), p)
        return self._store(str(p["chat_id"]), fields, p)

    async def _m_sendPhoto(self, p: dict[str, Any], f: dict[str, Any]) -> Any:
        if "photo" not in f:
            return _error(400, "Bad Request: there is no photo in the request")
        _name, data, _mime = f["photo"]
        if not data.startswith(b"\x89PNG") and not data.startswith(b"\xff\xd8"):
            return _error(400, "Bad Request: IMAGE_PROCESS_FAILED")
        photo = [{"file_id": f"photo{len(data)}", "file_unique_id": f"p{len(data)}",
                  "width": 640, "height": 480, "file_size": len(data)}]
        fields: dict[str, Any] = {"photo": photo}
        if p.get("caption"):
            fields["caption"] = _shown(str(p["caption"]), p)
        return self._store(str(p["chat_id"]), fields, p)


def _error(status: int, description: str) -> web.Response:
    return web.json_response({"ok": False, "error_code": status, "description": description},
                             status=status)


def _shown(text: str, p: dict[str, Any]) -> str:
    """The text as a Telegram client shows it: tags gone, entities decoded (HTML mode)."""
    if p.get("parse_mode") == "HTML":
        return html.unescape(_TAGS.sub("", text))
    return text


def _balanced(text: str) -> bool:
    stack: list[str] = []
    for match in re.finditer(r"<(/?)([a-z]+)[^>]*>", text):
        closing, name = match.groups()
        if not closing:
            stack.append(name)
        elif not stack or stack.pop() != name:
            return False
    # a bare "<" or "&" that is not an entity is what Telegram rejects too
    if re.search(r"<(?!/?[a-z]+[^>]*>)", text) or re.search(r"&(?![a-z]+;|#\d+;|#x[0-9a-f]+;)",
                                                          text):
        return False
    return not stack


def _utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2
