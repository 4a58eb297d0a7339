"""A local fake Slack Web API: real `slack_sdk` clients talk to it over HTTP and it records them.

Point the app at it with `SLACK_API_URL=fake.api_url`. It runs its own event loop in a thread,
so it serves async tests, sync tests and subprocesses alike:

    with FakeSlackAPI() as fake:                   # or: fake = FakeSlackAPI().start(); fake.stop()
        fake.add_channel("C1", "sales", is_member=False)
        fake.fail_next(2, status=429, retry_after=1)          # the next 2 calls are rate limited
        fake.error_next("chat.postMessage", "channel_not_found")  # ok:false for one call
        ...
        [post] = fake.wait_for("chat.postMessage")            # or: await fake.awaited(...)
        post.params["channel"], post.params["blocks"]

Every request is a `Call` (method, params merged from the query, form and JSON body with
`blocks`/`view`/`files` JSON-decoded, uploaded bytes, the bearer token, the status answered),
failed ones included, so a test can see a retry. The methods the app uses answer with the shapes
Slack documents (auth.test, chat.postMessage/postEphemeral/update/delete, conversations.open/info,
users.info, views.open/publish/update/push, files.getUploadURLExternal + the upload URL +
files.completeUploadExternal, apps.connections.open); any other method answers `ok: true`
with nothing else, so a new call is recorded rather than failing obscurely. Response URLs
(`fake.response_url("x")`) record what is posted to them as method `response_url`. Socket Mode:
`apps.connections.open` hands out a websocket URL on this server; `fake.socket_send(envelope)`
pushes an envelope to the connected client and its acks are recorded as `socket.ack`.

Like Slack, posting needs a place the bot may post to: a channel added with `add_channel` where
it is a member (else `not_in_channel` / `channel_not_found`, or `is_archived`), or the bot's DM
with a user (`dm_of(user)`, what `conversations.open` returns). Another process can use it too:
`python -m tests.fakes.slack_api --channel C1:sales` prints the API URL and serves until stdin
closes; `GET /_calls?method=&channel=&since=` returns what it recorded as JSON.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from aiohttp import BodyPartReader, WSMsgType, web

from tests.fakes.base import ThreadedServer

BOT_USER_ID = "U0BOT"
BOT_ID = "B0BOT"
TEAM_ID = "T0TEAM"

_JSON_FIELDS = ("blocks", "view", "files", "attachments", "metadata")


@dataclass(frozen=True)
class Call:
    method: str
    params: dict[str, Any]
    files: dict[str, bytes] = field(default_factory=dict)
    token: str | None = None
    status: int = 200
    error: str | None = None
    at: float = 0.0
    response: dict[str, Any] = field(default_factory=dict)  # what it answered (ok:true calls)

    @property
    def ok(self) -> bool:
        return self.status == 200 and self.error is None


@dataclass
class _Failure:
    method: str | None
    status: int
    error: str
    retry_after: int | None


class FakeSlackAPI(ThreadedServer):
    """See the module docstring. `team_id` is what auth.test reports."""

    thread_name = "fake-slack-api"

    def __init__(self, *, team_id: str = TEAM_ID, host: str = "127.0.0.1") -> None:
        super().__init__()
        self.team_id = team_id
        self.host = host
        self.port = 0
        self._calls: list[Call] = []
        self._lock = threading.Lock()
        self._failures: list[_Failure] = []
        self._ts = itertools.count(1)
        self._ids = itertools.count(1)
        self.channels: dict[str, dict[str, Any]] = {}
        self.users: dict[str, dict[str, Any]] = {}
        #: (channel, ts) -> the message as last posted or updated
        self.messages: dict[tuple[str, str], dict[str, Any]] = {}
        self.uploads: dict[str, bytes] = {}
        self._opened: set[str] = set()
        self.delay = 0.0  # seconds every API answer waits (to make a slow Slack)
        self._runner: web.AppRunner | None = None
        self._sockets: list[web.WebSocketResponse] = []
        # `GET /_wait` long polls: (matches a call?, the future to answer with its index)
        self._waiters: list[tuple[Callable[[Call], bool], asyncio.Future[int]]] = []

    # ---- life cycle ---------------------------------------------------------------------------

    async def _serve(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/api/{method}", self._api)
        app.router.add_get("/api/{method}", self._api)
        app.router.add_post("/upload/{file_id}", self._upload)
        app.router.add_post("/response/{key}", self._response_url)
        app.router.add_get("/socket", self._socket)
        app.router.add_get("/_calls", self._calls_json)
        app.router.add_get("/_wait", self._wait_json)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def _shutdown(self) -> None:
        for ws in list(self._sockets):
            await ws.close()
        if self._runner is not None:
            await self._runner.cleanup()

    # ---- addresses ----------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def api_url(self) -> str:
        """What SLACK_API_URL should be (slack_sdk wants the trailing slash)."""
        return f"{self.url}/api/"

    def response_url(self, key: str = "r") -> str:
        return f"{self.url}/response/{key}"

    # ---- scripting ----------------------------------------------------------------------------

    def fail_next(self, count: int = 1, *, status: int = 429, retry_after: int | None = 1,
                  method: str | None = None) -> None:
        """The next `count` calls (of `method`, or of any method) answer HTTP `status`:
        429 with `Retry-After` and `ratelimited`, or a 5xx."""
        error = "ratelimited" if status == 429 else "internal_error"
        with self._lock:
            self._failures.extend(_Failure(method, status, error,
                                           retry_after if status == 429 else None)
                                  for _ in range(count))

    def error_next(self, method: str, error: str, count: int = 1) -> None:
        """The next `count` calls of `method` answer 200 `{"ok": false, "error": error}`."""
        with self._lock:
            self._failures.extend(_Failure(method, 200, error, None) for _ in range(count))

    def add_channel(self, channel_id: str, name: str, *, is_member: bool = True,
                    is_private: bool = False, is_archived: bool = False) -> None:
        self.channels[channel_id] = {
            "id": channel_id, "name": name, "is_channel": not is_private,
            "is_group": is_private, "is_im": False, "is_private": is_private,
            "is_member": is_member, "is_archived": is_archived, "created": 1700000000,
        }

    def add_user(self, user_id: str, name: str, *, tz: str = "UTC", locale: str = "en-US",
                 is_bot: bool = False, deleted: bool = False) -> None:
        self.users[user_id] = {
            "id": user_id, "team_id": self.team_id, "name": name, "real_name": name,
            "deleted": deleted, "is_bot": is_bot, "tz": tz, "locale": locale,
            "profile": {"real_name": name, "display_name": name},
        }

    # ---- what happened ------------------------------------------------------------------------

    def calls(self, method: str | None = None) -> list[Call]:
        with self._lock:
            return [c for c in self._calls if method is None or c.method == method]

    def clear(self) -> None:
        with self._lock:
            self._calls.clear()

    def wait_for(self, method: str, count: int = 1, *, timeout: float = 10.0) -> list[Call]:
        """Block until `count` successful calls of `method` were made; return them."""
        deadline = time.monotonic() + timeout
        while True:
            found = [c for c in self.calls(method) if c.ok]
            if len(found) >= count:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"waited {timeout}s for {count} x {method}; "
                                     f"got {[c.method for c in self.calls()]}")
            time.sleep(0.01)

    async def awaited(self, method: str, count: int = 1, *, timeout: float = 10.0) -> list[Call]:
        """`wait_for` for async tests (does not block the test's event loop)."""
        deadline = time.monotonic() + timeout
        while True:
            found = [c for c in self.calls(method) if c.ok]
            if len(found) >= count:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"waited {timeout}s for {count} x {method}; "
                                     f"got {[c.method for c in self.calls()]}")
            await asyncio.sleep(0.01)

    # ---- Socket Mode --------------------------------------------------------------------------

    def socket_send(self, envelope: dict[str, Any]) -> None:
        """Push a Socket Mode envelope to every connected client."""
        loop = self._loop
        assert loop is not None, "not started"

        async def send() -> None:
            for ws in list(self._sockets):
                await ws.send_str(json.dumps(envelope))

        asyncio.run_coroutine_threadsafe(send(), loop).result(10)

    @property
    def socket_clients(self) -> int:
        return len(self._sockets)

    async def _socket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self._sockets.append(ws)
        await ws.send_str(json.dumps({"type": "hello", "num_connections": 1,
                                      "debug_info": {"host": "fake"},
                                      "connection_info": {"app_id": "A0FAKE"}}))
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    self._record(Call("socket.ack", json.loads(msg.data), at=time.time()))
        finally:
            self._sockets.remove(ws)
        return ws

    # ---- HTTP handlers ------------------------------------------------------------------------

    def _record(self, call: Call) -> None:
        with self._lock:
            self._calls.append(call)
            index = len(self._calls) - 1
        if self._waiters and self._loop is not None:
            self._loop.call_soon_threadsafe(self._wake, index, call)

    def _wake(self, index: int, call: Call) -> None:
        for matches, future in list(self._waiters):
            if not future.done() and matches(call):
                future.set_result(index)

    def _take_failure(self, method: str) -> _Failure | None:
        with self._lock:
            for i, failure in enumerate(self._failures):
                if failure.method in (None, method):
                    return self._failures.pop(i)
        return None

    async def _params(self, request: web.Request) -> tuple[dict[str, Any], dict[str, bytes]]:
        params: dict[str, Any] = dict(request.query)
        files: dict[str, bytes] = {}
        ctype = request.content_type
        if ctype == "application/json":
            body = await request.json()
            if isinstance(body, dict):
                params.update(body)
        elif ctype == "multipart/form-data":
            reader = await request.multipart()
            async for part in reader:
                if not isinstance(part, BodyPartReader):
                    continue
                if part.filename:
                    files[str(part.name)] = bytes(await part.read())
                else:
                    params[str(part.name)] = await part.text()
        elif request.can_read_body:
            form = await request.post()
            params.update({k: v for k, v in form.items() if isinstance(v, str)})
        for name in _JSON_FIELDS:
            value = params.get(name)
            if isinstance(value, str) and value[:1] in "[{":
                with contextlib.suppress(ValueError):
                    params[name] = json.loads(value)
        return params, files

    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        params, files = await self._params(request)
        auth = request.headers.get("Authorization", "")
        token = auth.removeprefix("Bearer ") if auth.startswith("Bearer ") else params.get("token")
        if self.delay:
            await asyncio.sleep(self.delay)
        failure = self._take_failure(method)
        if failure is not None:
            self._record(Call(method, params, files, token, failure.status, failure.error,
                              time.time()))
            headers = {"Retry-After": str(failure.retry_after)} if failure.retry_after is not None \
                else {}
            return web.json_response({"ok": False, "error": failure.error},
                                     status=failure.status, headers=headers)
        try:
            body = self._answer(method, params, files)
        except _SlackError as exc:
            self._record(Call(method, params, files, token, 200, exc.error, time.time()))
            return web.json_response({"ok": False, "error": exc.error})
        self._record(Call(method, params, files, token, 200, None, time.time(), body))
        return web.json_response({"ok": True, **body})

    async def _calls_json(self, request: web.Request) -> web.Response:
        """The recorded calls as JSON, for a test or benchmark in another process:
        `GET /_calls?method=chat.postMessage&channel=D1&since=N` (since: an index)."""
        method = request.query.get("method")
        channel = request.query.get("channel")
        since = int(request.query.get("since", "0"))
        with self._lock:
            calls = list(enumerate(self._calls))[since:]
        out = [{"index": i, "method": c.method, "params": c.params, "status": c.status,
                "error": c.error, "response": c.response}
               for i, c in calls
               if (method is None or c.method == method)
               and (channel is None or c.params.get("channel") == channel)]
        return web.json_response({"calls": out, "total": since + len(calls)})

    async def _wait_json(self, request: web.Request) -> web.Response:
        """The first call recorded at or after wall-clock time `after` that matches, waiting up
        to `timeout` seconds for it (504 if none comes); for a benchmark in another process:
        `GET /_wait?after=T&method=chat.postMessage&channel=D1&user=U1&actions=1` (actions: the
        call's blocks hold an actions block)."""
        q = request.query
        after = float(q.get("after", "0"))
        method, channel, user = q.get("method"), q.get("channel"), q.get("user")
        actions = q.get("actions") == "1"

        def matches(c: Call) -> bool:
            return c.at >= after and (method is None or c.method == method) \
                and (channel is None or c.params.get("channel") == channel) \
                and (user is None or c.params.get("user") == user) \
                and (not actions or any(isinstance(b, dict) and b.get("type") == "actions"
                                        for b in c.params.get("blocks") or []))

        found: int | None = None
        with self._lock:
            for i in range(len(self._calls) - 1, -1, -1):  # recent calls only
                if self._calls[i].at < after - 5:
                    break
                if matches(self._calls[i]):
                    found = i
        if found is None:
            future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
            entry = (matches, future)
            self._waiters.append(entry)
            try:
                found = await asyncio.wait_for(future, float(q.get("timeout", "30")))
            except TimeoutError:
                return web.json_response({"error": "timeout"}, status=504)
            finally:
                self._waiters.remove(entry)
        c = self._calls[found]
        return web.json_response({"index": found, "method": c.method, "params": c.params,
                                  "status": c.status, "error": c.error, "at": c.at,
                                  "response": c.response})

    async def _upload(self, request: web.Request) -> web.Response:
        file_id = request.match_info["file_id"]
        data = await request.read()
        self.uploads[file_id] = data
        self._record(Call("upload", {"file_id": file_id}, {file_id: data}, None, 200, None,
                          time.time()))
        return web.Response(text=f"OK - {len(data)}")

    async def _response_url(self, request: web.Request) -> web.Response:
        params, _ = await self._params(request)
        params["_key"] = request.match_info["key"]
        self._record(Call("response_url", params, at=time.time()))
        return web.Response(text="ok")

    # ---- the methods ----------------------------------------------------------------------------

    def _next_ts(self) -> str:
        return f"{1700000000 + next(self._ts)}.000100"

    def _next_id(self, prefix: str) -> str:
        return f"{prefix}{next(self._ids):06d}"

    def _answer(self, method: str, p: dict[str, Any], files: dict[str, bytes]) -> dict[str, Any]:
        if method == "auth.test":
            return {"url": "https://fake.slack.com/", "team": "Fake team", "user": "salescoach",
                    "team_id": self.team_id, "user_id": BOT_USER_ID, "bot_id": BOT_ID,
                    "is_enterprise_install": False}
        if method in ("chat.postMessage", "chat.update"):
            channel = _required(p, "channel")
            if method == "chat.update":
                ts = _required(p, "ts")
                if (channel, ts) not in self.messages:
                    raise _SlackError("message_not_found")
            else:
                self._check_channel(channel)
                ts = self._next_ts()
            if not p.get("text") and not p.get("blocks"):
                raise _SlackError("no_text")
            message = {"type": "message", "user": BOT_USER_ID, "bot_id": BOT_ID,
                       "text": p.get("text", ""), "blocks": p.get("blocks", []), "ts": ts}
            if p.get("thread_ts"):
                message["thread_ts"] = p["thread_ts"]
            self.messages[(channel, ts)] = message
            return {"channel": channel, "ts": ts, "message": message}
        if method == "chat.postEphemeral":
            channel = _required(p, "channel")
            _required(p, "user")
            self._check_channel(channel)
            return {"message_ts": self._next_ts()}
        if method == "chat.delete":
            self.messages.pop((_required(p, "channel"), _required(p, "ts")), None)
            return {"channel": p["channel"], "ts": p["ts"]}
        if method == "conversations.open":
            dm = dm_of(str(_required(p, "users")).split(",")[0])
            self._opened.add(dm)
            return {"channel": {"id": dm}}
        if method == "conversations.info":
            channel = _required(p, "channel")
            if channel.startswith("D"):
                return {"channel": {"id": channel, "is_im": True, "is_member": True}}
            if channel not in self.channels:
                raise _SlackError("channel_not_found")
            return {"channel": self.channels[channel]}
        if method == "users.info":
            user = _required(p, "user")
            if user not in self.users:
                self.add_user(user, user.lower())
            return {"user": self.users[user]}
        if method in ("views.open", "views.push", "views.update", "views.publish"):
            view = dict(p.get("view") or {})
            if method in ("views.open", "views.push") and not p.get("trigger_id"):
                raise _SlackError("invalid_arguments")
            view.setdefault("id", self._next_id("V"))
            view["team_id"] = self.team_id
            view["hash"] = self._next_id("H")  # a new one on every publish/update, like Slack
            return {"view": view}
        if method == "files.getUploadURLExternal":
            _required(p, "filename")
            file_id = self._next_id("F")
            return {"upload_url": f"{self.url}/upload/{file_id}", "file_id": file_id}
        if method == "files.completeUploadExternal":
            listed = p.get("files") or []
            if not isinstance(listed, list) or not listed:
                raise _SlackError("invalid_arguments")
            out = []
            for item in listed:
                if item["id"] not in self.uploads:
                    raise _SlackError("file_not_found")
                out.append({"id": item["id"], "title": item.get("title") or "",
                            "size": len(self.uploads[item["id"]])})
            return {"files": out}
        if method == "apps.connections.open":
            return {"url": f"ws://{self.host}:{self.port}/socket"}
        return {}

    def _check_channel(self, channel: str) -> None:
        """Posting needs the bot in the channel; a channel the fake was not told about
        (`add_channel`) does not exist, as for a private channel the bot cannot see. The DMs
        with the bot are `dm_of(user)` for users it knows (`add_user`) or opened."""
        if channel.startswith("D"):
            if channel not in self._opened and channel not in {dm_of(u) for u in self.users}:
                raise _SlackError("channel_not_found")  # someone else's DM
            return
        info = self.channels.get(channel)
        if info is None:
            raise _SlackError("channel_not_found")
        if info.get("is_archived"):
            raise _SlackError("is_archived")
        if not info.get("is_member"):
            raise _SlackError("channel_not_found" if info.get("is_private") else "not_in_channel")


class _SlackError(Exception):
    def __init__(self, error: str) -> None:
        super().__init__(error)
        self.error = error


def dm_of(user: str) -> str:
    """The id of the bot's DM with `user` in this fake ("U0REP1" -> "D0REP1")."""
    return "D" + user.lstrip("U")[:10]


def _required(params: dict[str, Any], name: str) -> str:
    value = params.get(name)
    if not value:
        raise _SlackError("invalid_arguments")
    return str(value)


@contextlib.contextmanager
def running() -> Iterator[FakeSlackAPI]:
    """`with running() as fake:` — a started fake, stopped afterwards."""
    fake = FakeSlackAPI().start()
    try:
        yield fake
    finally:
        fake.stop()


def main() -> None:
    """`python -m tests.fakes.slack_api [--channel ID:NAME ...]`: serve until stdin closes;
    prints the API URL first. Read what it recorded from `GET /_calls`."""
    import argparse
    import gc
    import sys

    parser = argparse.ArgumentParser(description="A fake Slack Web API server")
    parser.add_argument("--channel", action="append", default=[],
                        help="a channel the bot is a member of, as ID:NAME")
    args = parser.parse_args()
    with FakeSlackAPI() as fake:
        for spec in args.channel:
            channel_id, _, name = spec.partition(":")
            fake.add_channel(channel_id, name or channel_id)
        print(fake.api_url, flush=True)
        # run by a benchmark: a full collection here would stall the calls it measures, and a
        # fake that records every call frees nothing anyway
        gc.freeze()
        gc.disable()
        sys.stdin.read()


if __name__ == "__main__":
    main()
