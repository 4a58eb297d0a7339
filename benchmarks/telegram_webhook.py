"""Telegram webhook: updates/s and time to handle one update, with N chats at once.

A child process serves the real ASGI app (bot/web.py with the Telegram front end's routes) on
loopback with uvicorn, its python-telegram-bot pointed at the fake Bot API server of the tests
(loopback too, in this process, so the fake's work is not counted as the bot's). C chats each
play the English intake + qualification through `POST /telegram/webhook` (typed answers and
button taps, as tests/handlers/telegram does), one update at a time per chat, all chats at once.
Each chat waits `--think` seconds after a reply before its next update (default 1 s: a person
answering quickly, and Telegram lets a bot write to one chat about once a second anyway);
`--think 0` is a stress test where every chat fires its next update the moment it has a reply.
"Time to handle" is the webhook request from sending the update to the response: the coach's
turn is committed and every reply, edit and callback answer has been sent to the Bot API by
then. At the end every chat's account and qualified opportunity are checked,
so failures cannot pass as speed (exit status 1 if any is missing).

Telegram's flood limits are lifted in the server (`--telegram-limits` keeps them), so the
figures are our work and not Telegram's pacing (a reply of three messages is paced over two
seconds in one chat, and 30 messages a second overall cap what any bot may send).

    python benchmarks/telegram_webhook.py [--chats 50] [--think 1.0] [--database-url URL] [--json]
                                          [--profile FILE]

Target (from the issue): p99 under 200 ms at 50 concurrent chats.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import socket
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from sqlalchemy import func, select
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import quiet_gc
from bot.web import create_web_app, settle_heap
from handlers.telegram import Limits, TelegramFrontEnd
from store.db import Database, create_database, drop_database
from store.models import Account, Opportunity
from tests import scenarios as sc
from tests.fakes.telegram_api import FakeTelegramAPI
from tests.handlers.telegram.harness import SECRET, Driver, make_app

UNLIMITED = Limits(per_chat=(10**9, 10**9), per_group=(10**9, 1.0), overall=(10**9, 1.0))
HEADERS = {"X-Telegram-Bot-Api-Secret-Token": SECRET}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * q
    lo = int(k)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _script(chat: int) -> list[str]:
    name = sc.INTAKE_EN[1]
    return [f"{name} {chat}" if line == name else line for line in sc.INTAKE_EN]


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _verify(session: Session) -> tuple[int, int]:
    accounts = int(session.scalar(select(func.count()).select_from(Account)) or 0)
    opportunities = int(session.scalar(
        select(func.count()).select_from(Opportunity)
        .where(Opportunity.verdict == "opportunity")) or 0)
    return accounts, opportunities


def _serve_child(url: str, token: str, base_url: str, port: int, telegram_limits: bool,
                 ready: Any, profile: str | None = None, profile_on: Any = None,
                 profile_off: Any = None) -> None:
    """The measured process: the app, the Telegram front end and uvicorn, until SIGTERM.

    With `profile`, cProfile runs while the parent holds `profile_on` set (the measured chats,
    not the warm-up) in both the event loop's thread and the SQLite worker thread; the stats of
    both go to `profile` when `profile_off` is set."""
    import logging
    from types import SimpleNamespace

    logging.basicConfig(level=logging.WARNING)

    async def main() -> None:
        db = Database(url)
        app = make_app(db, SimpleNamespace(token=token, base_url=base_url))  # type: ignore[arg-type]
        front = TelegramFrontEnd(app, limits=None if telegram_limits else UNLIMITED)
        web = create_web_app(db=db, metrics=app.metrics, extra_routes=front.routes())
        server = uvicorn.Server(uvicorn.Config(web, host="127.0.0.1", port=port,
                                               log_level="warning", access_log=False))
        await front.start()
        server.config.load()
        settle_heap()  # as `salescoach serve` does (bot/web.py)
        serving = asyncio.create_task(server.serve())
        while not server.started:
            await asyncio.sleep(0.02)
        ready.set()
        profiling = (asyncio.create_task(_profiled(db, profile, profile_on, profile_off))
                     if profile else None)
        try:
            await serving
        finally:
            if profiling is not None:
                profiling.cancel()
            await front.stop()
            await db.dispose()

    asyncio.run(main())


async def _profiled(db: Database, path: str, on: Any, off: Any) -> None:
    """cProfile the event loop's thread and (SQLite) the worker thread between `on` and `off`."""
    import cProfile
    import pstats

    loop_prof, worker_prof = cProfile.Profile(), cProfile.Profile()
    worker = db._worker  # a benchmark's look inside: the SQLite worker thread
    await asyncio.to_thread(on.wait)
    if worker is not None:
        await worker.submit(worker_prof.enable)  # stays on for the worker thread's next jobs
    loop_prof.enable()
    await asyncio.to_thread(off.wait)
    loop_prof.disable()
    if worker is not None:
        await worker.submit(worker_prof.disable)
    stats = pstats.Stats(loop_prof)
    if worker is not None:
        stats.add(worker_prof)
    stats.dump_stats(path)
    Path(path + ".done").touch()


async def run(args: argparse.Namespace, url: str) -> dict[str, Any]:
    db = Database(url)
    api = FakeTelegramAPI().start()
    child: Any = None
    try:
        await db.upgrade()
        port = _free_port()
        context = multiprocessing.get_context("spawn")
        ready, profile_on, profile_off = context.Event(), context.Event(), context.Event()
        child = context.Process(target=_serve_child, args=(
            url, api.token, api.base_url, port, args.telegram_limits, ready, args.profile,
            profile_on, profile_off), daemon=True)
        child.start()
        if not await asyncio.to_thread(ready.wait, 120):
            raise RuntimeError("the server process did not start")
        endpoint = f"http://127.0.0.1:{port}/telegram/webhook"
        latencies: list[float] = []
        limits = httpx.Limits(max_connections=args.chats + 10,
                              max_keepalive_connections=args.chats + 10)
        async with httpx.AsyncClient(timeout=60, limits=limits) as client:

            async def play(chat: int, record: bool) -> None:
                async def deliver(update: dict[str, Any]) -> None:
                    t0 = time.perf_counter()
                    response = await client.post(endpoint, json=update, headers=HEADERS)
                    elapsed = time.perf_counter() - t0
                    if response.status_code != 200:
                        raise RuntimeError(f"webhook answered {response.status_code}")
                    if record:
                        latencies.append(elapsed)
                        if args.think:
                            await asyncio.sleep(args.think)

                user = api.user(100_000 + chat, first_name=f"Rep{chat}", last_name=None)
                driver = Driver(api, user, deliver)
                if record and args.think:  # the chats start spread over one think time
                    await asyncio.sleep(args.think * chat / args.chats)
                for line in _script(chat):
                    await driver.say(line)

            await play(-1, record=False)  # warm-up: org creation, caches, connections
            profile_on.set()
            started, cpu = time.perf_counter(), _cpu_seconds(child.pid)
            with quiet_gc():  # this process is the client and the fake Bot API
                await asyncio.gather(*(play(chat, True) for chat in range(args.chats)))
            wall = time.perf_counter() - started
            cpu = _cpu_seconds(child.pid) - cpu
            if args.profile:
                profile_off.set()
                done = Path(args.profile + ".done")
                for _ in range(600):
                    if done.exists():
                        done.unlink()
                        break
                    await asyncio.sleep(0.1)
        accounts, opportunities = await db.run(_verify)
        return {
            "backend": db.dialect, "chats": args.chats, "think_s": args.think,
            "updates": len(latencies), "wall_s": round(wall, 3),
            "updates_per_s": round(len(latencies) / wall, 1),
            "p50_ms": round(percentile(latencies, 0.5) * 1000, 1),
            "p90_ms": round(percentile(latencies, 0.9) * 1000, 1),
            "p99_ms": round(percentile(latencies, 0.99) * 1000, 1),
            "max_ms": round(max(latencies) * 1000, 1),
            # CPU the server process spent per update: what the machine's load does not change
            "server_cpu_ms_per_update": round(cpu / len(latencies) * 1000, 2),
            "bot_api_calls": len(api.calls),
            "accounts": accounts - 1, "qualified": opportunities - 1,
            "telegram_limits": bool(args.telegram_limits),
        }
    finally:
        if child is not None and child.is_alive():
            child.terminate()
            child.join(30)
        api.stop()
        await db.dispose()


async def bench(args: argparse.Namespace) -> int:
    drop: str | None = None
    tmp: tempfile.TemporaryDirectory[str] | None = None
    if args.database_url and make_url(args.database_url).get_backend_name() in (
            "postgresql", "postgres"):
        drop = f"salescoach_bench_{uuid.uuid4().hex[:10]}"
        url = await create_database(args.database_url, drop)
    elif args.database_url:
        url = args.database_url
    else:
        tmp = tempfile.TemporaryDirectory(prefix="salescoach-tg-bench-")
        url = f"sqlite:///{tmp.name}/bench.db"
    try:
        result = await run(args, url)
    finally:
        if drop is not None:
            await drop_database(args.database_url, drop)
        if tmp is not None:
            tmp.cleanup()
    print(f"telegram webhook on {result['backend']}: {result['chats']} chats at once "
          f"(think {result['think_s']} s), {result['updates']} updates in {result['wall_s']} s")
    print(f"  {result['updates_per_s']} updates/s; time to handle p50 {result['p50_ms']} ms, "
          f"p90 {result['p90_ms']} ms, p99 {result['p99_ms']} ms, max {result['max_ms']} ms")
    print(f"  server CPU {result['server_cpu_ms_per_update']} ms per update (one core: "
          f"~{1000 / max(result['server_cpu_ms_per_update'], 0.001):.0f} updates/s); "
          f"load average now {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"  {result['bot_api_calls']} Bot API calls; target p99 < 200 ms: "
          f"{'met' if result['p99_ms'] < 200 else 'NOT met'}")
    if args.json:
        print(json.dumps(result))
    ok = result["accounts"] == args.chats and result["qualified"] == args.chats
    if not ok:
        print(f"FAILED: {result['accounts']} accounts, {result['qualified']} qualified "
              f"for {args.chats} chats", file=sys.stderr)
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--chats", type=int, default=50, help="chats at once (default 50)")
    parser.add_argument("--database-url", default=None,
                        help="default: a temporary SQLite file; a postgresql:// server gets a "
                             "temporary database of its own")
    parser.add_argument("--think", type=float, default=1.0,
                        help="seconds a chat waits after a reply (0: as fast as possible)")
    parser.add_argument("--telegram-limits", action="store_true",
                        help="keep Telegram's flood limits (1 msg/s per chat, 30/s overall)")
    parser.add_argument("--json", action="store_true", help="also print one JSON object")
    parser.add_argument("--profile", metavar="FILE", default=None,
                        help="cProfile the server during the measured chats into FILE (pstats; "
                             "profiling slows it down, so its figures are not the real ones)")
    return asyncio.run(bench(parser.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
