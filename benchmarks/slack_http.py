"""Time to ack for Slack requests: salescoach's `POST /slack/events` against a bare Bolt app.

Three processes, so the load generator does not steal the measured app's CPU:
- the server: `salescoach serve` with only Slack settings (uvicorn, SQLite, then PostgreSQL),
  pinned to CPU 0;
- this client, pinned to CPU 1: `--concurrency` simulated reps, each on its own keep-alive
  HTTP/1.1 connection (raw asyncio streams: a few µs per request, no client library);
- the fake Slack Web API (tests/fakes/slack_api.py) that answers and records the app's calls,
  on CPU 1 with the client.

Each rep repeats what a rep does in Slack: `/coach intake` in a channel (a turn; the first
question posted in the DM, an ephemeral "opened in our DM"), types the customer's name in the DM
(a `message.im` event: a turn; the next question, a select menu), picks the industry from it
(`block_actions`: a turn, chat.update and the next question). Bodies are built and signed before
the clock starts. Time to ack is from writing the request to reading its HTTP response — what
Slack's 3-second rule measures. The work after the ack is not hidden: a rep sends its next
request only when the fake has recorded the app's last Web API call for the previous one, and
that "follow-up done" latency is reported too. The server's CPU time (all its threads, from
/proc) per request is the figure least disturbed by a busy machine.

The baseline: a bare Bolt AsyncApp whose listeners only ack (configured like salescoach's:
`process_before_response=True`), served by uvicorn in its own process the same way, driven by
the same reps with the same requests; as it posts nothing, a rep's next request follows its ack.

    python benchmarks/slack_http.py [--requests 600] [--concurrency 50] [--database-url URL]
                                    [--profile FILE] [--no-pin] [--json]

PostgreSQL runs too when --database-url (or SALESCOACH_TEST_DATABASE_URL) is a postgresql://
server URL: a scratch database is created there and dropped afterwards (`--database-url ""`:
SQLite only). `--profile FILE` runs the SQLite server under cProfile (timed by its event loop
thread's CPU time; the database thread is not profiled) and writes the stats to FILE.

Targets (from the issue): p99 ack < 300 ms at 50 concurrent requests, and < 2x the bare app.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.common import quiet_gc  # noqa: E402
from store.db import create_database, drop_database  # noqa: E402
from tests.fakes.slack_api import BOT_ID, BOT_USER_ID, TEAM_ID, dm_of  # noqa: E402
from tests.handlers.slack.harness import SECRET, sign  # noqa: E402

CHANNEL = "C0SALES"
SERVER_CPU, CLIENT_CPU = 0, 1
FORM = "application/x-www-form-urlencoded"


# ---- a light HTTP/1.1 client ------------------------------------------------------------------


class Connection:
    """One keep-alive HTTP/1.1 connection; requests are pre-built bytes."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, raw: bytes) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        self.writer.write(raw)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
            elif name.strip().lower() == b"transfer-encoding":
                raise RuntimeError("chunked responses are not expected here")
        body = await self.reader.readexactly(length) if length else b""
        return status, body

    async def get_json(self, path: str, query: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        target = f"{path}?{urllib.parse.urlencode(query)}"
        status, body = await self.request(
            f"GET {target} HTTP/1.1\r\nHost: {self.host}\r\n\r\n".encode())
        return status, dict(json.loads(body)) if body else {}

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(OSError):
                await self.writer.wait_closed()
            self.writer = None


def _post(body: bytes, content_type: str) -> bytes:
    """A signed `POST /slack/events` as bytes on the wire."""
    headers = {"Host": "127.0.0.1", "Content-Type": content_type,
               "Content-Length": str(len(body)), **sign(body, int(time.time()))}
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    return f"POST /slack/events HTTP/1.1\r\n{head}\r\n".encode() + body


# ---- what Slack sends -------------------------------------------------------------------------


def _command(user: str, text: str) -> bytes:
    return _post(urllib.parse.urlencode({
        "token": "legacy", "team_id": TEAM_ID, "team_domain": "fake", "channel_id": CHANNEL,
        "channel_name": "sales", "user_id": user, "user_name": user, "command": "/coach",
        "text": text, "api_app_id": "A0FAKE", "response_url": "http://127.0.0.1:9/none",
        "trigger_id": f"{uuid.uuid4().int % 10**12}.1.2",
    }).encode(), FORM)


def _message(user: str, text: str) -> bytes:
    ts = f"{time.time():.6f}"
    envelope = {
        "token": "legacy", "team_id": TEAM_ID, "api_app_id": "A0FAKE", "type": "event_callback",
        "event_id": f"Ev{uuid.uuid4().hex[:12]}", "event_time": int(time.time()),
        "event": {"type": "message", "text": text, "user": user, "ts": ts, "team": TEAM_ID,
                  "channel": dm_of(user), "event_ts": ts, "channel_type": "im",
                  "client_msg_id": str(uuid.uuid4())},
        "authorizations": [{"enterprise_id": None, "team_id": TEAM_ID, "user_id": BOT_USER_ID,
                            "is_bot": True, "is_enterprise_install": False}],
    }
    return _post(json.dumps(envelope).encode(), "application/json")


_CANNED_QUESTION: dict[str, Any] = {
    "params": {"text": "Which industry?", "blocks": [{
        "type": "actions", "block_id": "sc_options", "elements": [{
            "type": "static_select", "action_id": "sc_select",
            "options": [{"text": {"type": "plain_text", "text": "Oil & gas"},
                         "value": "oil_gas"}]}]}]},
    "response": {"ts": "1700000000.000100"},
}


def _click(user: str, post: dict[str, Any]) -> bytes:
    """A pick of the first option on `post` (a question as the fake recorded it)."""
    blocks = post["params"].get("blocks") or []
    block = next(b for b in blocks if b.get("block_id") == "sc_options")
    element = block["elements"][0]
    ts = str(post["response"]["ts"])
    action: dict[str, Any] = {"action_id": element["action_id"], "block_id": block["block_id"],
                              "type": element["type"], "action_ts": f"{time.time():.6f}"}
    if element["type"] == "static_select":
        action["selected_option"] = element["options"][0]
    else:
        action.update(text=element["text"], value=element.get("value"))
    dm = dm_of(user)
    payload: dict[str, Any] = {
        "type": "block_actions", "user": {"id": user, "username": user, "team_id": TEAM_ID},
        "api_app_id": "A0FAKE", "token": "legacy", "trigger_id": "1.2.3",
        "container": {"type": "message", "message_ts": ts, "channel_id": dm,
                      "is_ephemeral": False},
        "team": {"id": TEAM_ID, "domain": "fake"}, "enterprise": None,
        "is_enterprise_install": False, "channel": {"id": dm, "name": "directmessage"},
        "message": {"type": "message", "text": post["params"].get("text", ""), "ts": ts,
                    "bot_id": BOT_ID, "user": BOT_USER_ID, "blocks": blocks},
        "state": {"values": {}}, "response_url": "http://127.0.0.1:9/none", "actions": [action],
    }
    return _post(urllib.parse.urlencode({"payload": json.dumps(payload)}).encode(), FORM)


@dataclass
class Rep:
    """One simulated rep: intake command -> types the name -> picks the industry -> again."""

    user: str
    step: int = 0
    question: dict[str, Any] | None = None

    def next_request(self) -> tuple[str, bytes, dict[str, Any]]:
        """(kind, signed request, what the fake records last for it: a `/_wait` query)."""
        dm = dm_of(self.user)
        kind = ("command", "message", "click")[self.step % 3]
        self.step += 1
        if kind == "command":
            return kind, _command(self.user, "intake"), {
                "method": "chat.postEphemeral", "user": self.user}
        if kind == "message":
            return kind, _message(self.user, f"Harbin Bus Group {self.step}"), {
                "method": "chat.postMessage", "channel": dm, "actions": 1}
        return kind, _click(self.user, self.question or _CANNED_QUESTION), {
            "method": "chat.postMessage", "channel": dm, "actions": 1}


@dataclass
class Run:
    acks: dict[str, list[float]] = field(default_factory=lambda: {
        "command": [], "message": [], "click": []})
    followups: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    wall: float = 0.0
    cpu: float = 0.0


async def _drive(host: str, port: int, fake_port: int | None, reps: list[Rep],
                 total: int) -> Run:
    """`total` requests from the reps, each on its own connection; with `fake_port`, a rep
    waits for the follow-up of each request before its next one."""
    run = Run()
    counter = iter(range(total))

    async def rep_loop(rep: Rep) -> None:
        server = Connection(host, port)
        fake = Connection(host, fake_port) if fake_port else None
        try:
            for _ in counter:
                kind, raw, last = rep.next_request()  # built and signed off the clock
                sent_at = time.time()
                started = time.perf_counter()
                status, body = await server.request(raw)
                run.acks[kind].append(time.perf_counter() - started)
                if status != 200:
                    run.failures.append(f"{kind}: HTTP {status} {body[:200]!r}")
                    continue
                if fake is None:
                    continue
                code, call = await fake.get_json("/_wait", {**last, "after": sent_at,
                                                            "timeout": 60})
                if code != 200 or call.get("error"):
                    run.failures.append(f"{kind}: follow-up {code} {call.get('error')}")
                    continue
                run.followups.append(float(call["at"]) - sent_at)
                if kind == "message":
                    rep.question = call
        finally:
            await server.close()
            if fake is not None:
                await fake.close()

    started = time.perf_counter()
    await asyncio.gather(*(rep_loop(rep) for rep in reps))
    run.wall = time.perf_counter() - started
    return run


# ---- the servers ------------------------------------------------------------------------------


def _bare_app(api_url: str) -> Any:
    """The baseline: a Bolt AsyncApp whose listeners only ack, plus a /healthz."""
    from slack_bolt.adapter.starlette.async_handler import AsyncSlackRequestHandler
    from slack_bolt.async_app import AsyncApp
    from slack_bolt.context.ack.async_ack import AsyncAck
    from slack_sdk.web.async_client import AsyncWebClient
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    # process_before_response as in salescoach: Bolt answers when the listener returns
    # (its default runs the listener as a task and polls for the ack every 10 ms)
    bolt = AsyncApp(name="bare", signing_secret=SECRET, process_before_response=True,
                    client=AsyncWebClient(token="xoxb-bare", base_url=api_url))

    @bolt.command("/coach")
    async def command(ack: AsyncAck) -> None:
        await ack()

    @bolt.event("message")
    async def message(ack: AsyncAck) -> None:
        await ack()

    @bolt.action(re.compile(".*"))
    async def action(ack: AsyncAck) -> None:
        await ack()

    handler = AsyncSlackRequestHandler(bolt)

    async def events(request: Request) -> Response:
        return await handler.handle(request)

    async def healthz(_request: Request) -> Response:
        return Response("ok")

    return Starlette(routes=[Route("/slack/events", events, methods=["POST"]),
                             Route("/healthz", healthz, methods=["GET"])])


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _pin(cpu: int) -> Callable[[], None] | None:
    if not hasattr(os, "sched_setaffinity") or (os.cpu_count() or 1) < 2:
        return None
    return lambda: os.sched_setaffinity(0, {cpu})


def _start(kind: str, port: int, api_url: str, database_url: str, *, pin: bool,
           profile: str | None = None,
           switch_interval: float | None = None) -> subprocess.Popen[bytes]:
    """`salescoach serve` with only Slack settings, or the bare app, as its own process."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SLACK_", "TELEGRAM_", "SALESCOACH_")) and k != "DATABASE_URL"}
    env.update({"SLACK_BOT_TOKEN": "xoxb-bench", "SLACK_SIGNING_SECRET": SECRET,
                "SLACK_API_URL": api_url, "DATABASE_URL": database_url, "PORT": str(port),
                "HOST": "127.0.0.1", "PYTHONPATH": str(ROOT)})
    if kind == "salescoach" and (profile or switch_interval):
        command = [sys.executable, __file__, "--profiled-serve", profile or "",
                   "--switch-interval", str(switch_interval or sys.getswitchinterval())]
    elif kind == "salescoach":
        command = [sys.executable, "-m", "bot.cli", "serve"]
    else:
        command = [sys.executable, __file__, "--bare-server", str(port), "--api-url", api_url]
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    if pin and _pin(SERVER_CPU) is not None:
        # right after the start, before the interpreter starts threads (they inherit it)
        os.sched_setaffinity(proc.pid, {SERVER_CPU})
    return proc


def _cpu_seconds(pid: int) -> float:
    """User + system CPU of a process, all its threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _ready(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited with {proc.returncode}")
        conn = Connection("127.0.0.1", port)
        try:
            status, _ = await conn.request(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            if status == 200:
                return
        except OSError:
            pass
        finally:
            await conn.close()
        await asyncio.sleep(0.1)
    raise SystemExit("the server did not start within 60 s")


class Fake:
    """The fake Slack Web API in its own process."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.fakes.slack_api", "--channel", f"{CHANNEL}:sales"],
            cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        self.api_url = self.proc.stdout.readline().strip()
        self.port = int(urllib.parse.urlsplit(self.api_url).port or 0)

    async def errors_since(self, index: int) -> tuple[int, list[dict[str, Any]]]:
        """(calls recorded, failed calls from `index` on)."""
        conn = Connection("127.0.0.1", self.port)
        try:
            _, found = await conn.get_json("/_calls", {"since": index})
        finally:
            await conn.close()
        errors = [c for c in found["calls"] if c["status"] != 200 or c["error"]]
        return int(found["total"]), errors

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(30)


async def _measure(kind: str, fake: Fake, database_url: str, args: argparse.Namespace,
                   profile: str | None = None) -> Run:
    port = _free_port()
    proc = _start(kind, port, fake.api_url, database_url, pin=not args.no_pin, profile=profile,
                  switch_interval=args.switch_interval)
    follow = fake.port if kind == "salescoach" else None
    reps = [Rep(f"U{n:09d}") for n in range(args.concurrency)]
    try:
        await _ready(port, proc)
        # warm up (off the clock): every rep has met the app once (users.info, the DM channel)
        await _drive("127.0.0.1", port, follow, reps, len(reps) * 3)
        before, _ = await fake.errors_since(0)
        cpu = _cpu_seconds(proc.pid)
        with quiet_gc():
            run = await _drive("127.0.0.1", port, follow, reps, args.requests)
        run.cpu = _cpu_seconds(proc.pid) - cpu
    finally:
        # uvicorn re-raises the signal after its graceful shutdown: SIGINT (a KeyboardInterrupt)
        # lets cProfile write its file, SIGTERM would end the process first
        proc.send_signal(signal.SIGINT if profile else signal.SIGTERM)
        proc.wait(60)
    if run.failures:
        raise SystemExit(f"{kind}: {len(run.failures)} requests failed, e.g. {run.failures[0]}")
    _, errors = await fake.errors_since(before)
    if errors:
        raise SystemExit(f"{kind}: {len(errors)} Web API calls failed, e.g. {errors[0]}")
    return run


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return 1000 * ordered[min(len(ordered) - 1, int(len(ordered) * q))] if ordered else 0.0


def _stats(run: Run) -> dict[str, Any]:
    acks = [a for kind in run.acks.values() for a in kind]
    out: dict[str, Any] = {
        "requests": len(acks), "rps": len(acks) / run.wall,
        "p50_ms": 1000 * statistics.median(acks), "p99_ms": _pct(acks, 0.99),
        "max_ms": 1000 * max(acks),
        "cpu_ms_per_request": 1000 * run.cpu / len(acks),
        "p99_ms_by_kind": {k: _pct(v, 0.99) for k, v in run.acks.items()},
    }
    if run.followups:
        out.update(followups=len(run.followups),
                   followup_p50_ms=1000 * statistics.median(run.followups),
                   followup_p99_ms=_pct(run.followups, 0.99))
    return out


async def _run_backend(name: str, url: str, args: argparse.Namespace) -> dict[str, Any]:
    fake = Fake()
    try:
        profile = args.profile if name == "sqlite" else None
        ours = _stats(await _measure("salescoach", fake, url, args, profile))
        bare = _stats(await _measure("bare", fake, url, args))
    finally:
        fake.close()
    return {"backend": name, "salescoach": ours, "bare_bolt": bare,
            "p99_ratio": ours["p99_ms"] / bare["p99_ms"],
            "p50_ratio": ours["p50_ms"] / bare["p50_ms"]}


def _profiled_serve(path: str, switch_interval: float) -> None:
    """`salescoach serve` with the interpreter's thread switch interval set, under cProfile
    (timed by the event loop thread's CPU time, so time spent waiting for the GIL, for the CPU
    on a busy machine or for I/O does not count) if `path`."""
    import cProfile

    from bot.cli import main as cli_main

    sys.setswitchinterval(switch_interval)
    profiler = cProfile.Profile(time.thread_time)
    sys.argv = ["salescoach", "serve"]
    if path:
        profiler.enable()
    try:
        cli_main()
    except (SystemExit, KeyboardInterrupt):
        pass
    finally:
        if path:
            profiler.disable()
            profiler.dump_stats(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--requests", type=int, default=600)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--database-url", default=None,
                        help="a PostgreSQL server URL (default: SALESCOACH_TEST_DATABASE_URL; "
                             "\"\" for SQLite only)")
    parser.add_argument("--profile", default=None, help="cProfile the SQLite server into FILE")
    parser.add_argument("--no-pin", action="store_true", help="do not pin processes to CPUs")
    parser.add_argument("--switch-interval", type=float, default=None,
                        help="run the server with sys.setswitchinterval(S) (default: Python's "
                             "5 ms); how long the event loop may wait for the GIL")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--bare-server", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--api-url", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--profiled-serve", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.profiled_serve is not None:
        _profiled_serve(args.profiled_serve, args.switch_interval)
        return
    if args.bare_server is not None:
        from bot.web import make_server

        asyncio.run(make_server(_bare_app(args.api_url), host="127.0.0.1",
                                port=args.bare_server).serve())
        return

    pin = _pin(CLIENT_CPU)
    if pin is not None and not args.no_pin:
        pin()  # this client, and the fake it starts, on the other CPU than the server
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        results.append(asyncio.run(_run_backend("sqlite", f"sqlite:///{tmp}/bench.db", args)))
    server = args.database_url if args.database_url is not None \
        else os.environ.get("SALESCOACH_TEST_DATABASE_URL")
    if server and server.startswith("postgresql"):
        name = f"salescoach_bench_{uuid.uuid4().hex[:8]}"
        url = asyncio.run(create_database(server, name))
        try:
            results.append(asyncio.run(_run_backend("postgresql", url, args)))
        finally:
            asyncio.run(drop_database(server, name))
    if args.json:
        print(json.dumps(results, indent=2))
        return
    pinned = "server on CPU 0, client + fake on CPU 1" if pin and not args.no_pin \
        else "not pinned"
    print(f"{args.requests} signed requests from {args.concurrency} concurrent reps "
          f"(/coach intake, a DM message, a select pick, in turn); {pinned}")
    for r in results:
        for label in ("salescoach", "bare_bolt"):
            s = r[label]
            line = (f"  {r['backend']:<10} {label:<10} {s['rps']:6.0f} req/s  ack p50 "
                    f"{s['p50_ms']:6.1f} p99 {s['p99_ms']:6.1f} max {s['max_ms']:6.1f} ms  "
                    f"server CPU {s['cpu_ms_per_request']:5.2f} ms/req")
            if "followup_p99_ms" in s:
                line += (f"  follow-up done p50 {s['followup_p50_ms']:6.1f} "
                         f"p99 {s['followup_p99_ms']:6.1f} ms ({s['followups']})")
            print(line)
        verdict = "ok" if r["salescoach"]["p99_ms"] < 300 and r["p99_ratio"] < 2 else "MISSED"
        print(f"  {r['backend']:<10} ratio p99 {r['p99_ratio']:.2f}x, p50 "
              f"{r['p50_ratio']:.2f}x (target p99 < 300 ms and < 2x: {verdict})")


if __name__ == "__main__":
    main()
