"""Durable dialog turns per second, against the cost of one bare insert+commit.

Simulates N reps (one org, distinct users) each running the full English intake and
qualification script through `Coach.handle`, C reps at a time, and times every turn. On the same
database and through the same `Database.run` path it then times a bare one-row insert+commit, so
the per-turn overhead above "one durable write" is visible as a ratio. At the end it checks that
every rep's run produced an account and a qualified opportunity (so failures cannot pass as
speed) and exits non-zero if not.

    python benchmarks/dialog_turns.py [--reps 200] [--concurrency 50] [--database-url URL] [--json]

Targets (from the issue): >= 1,000 durable turns/s on SQLite on one core; ratio < 3.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

from sqlalchemy import Table, func, insert, select
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bot.app import build_engine
from bot.coach import Coach
from dialogs.messages import Inbound
from store.db import Database, create_database, drop_database
from store.models import Account, Opportunity, ProcessedEvent

CUSTOMER = "Daqing Oilfield Company"

# The full English intake + qualification script, one input per turn. `{customer}` is made
# unique per rep. Starts with `intake`; the last answer yields the qualification verdict.
SCRIPT: tuple[str, ...] = (
    "intake",
    "{customer}",
    "oil",
    "1",
    "12,000",
    "Oil and gas production",
    "3",
    "yes",
    "8000",
    "¥2.4m",
    "2",
    "Daqing, Heilongjiang",
    "163000",
    "skip",
    "2, 3, 5",
    "Procurement reports to the deputy GM; the union has a say on workwear.",
    "Liu Qiang",
    "Head of procurement",
    "2",
    "procurement",
    "designer, evaluator",
    "mid",
    "owl",
    "2",
    "138 0000 0000",
    "Plays badminton; daughter sits the gaokao next year.",
    "yes",
    "Zhao Min",
    "back",
    "Zhao Min",
    "skip",
    "1",
    "1",
    "decision maker",
    "1",
    "tiger",
    "1",
    "skip",
    "skip",
    "no",
    "yes",
    "Bosideng",
    "Supplied 2024 winter jackets",
    "skip",
    "skip",
    "Brand, price",
    "Late delivery last year",
    "no",
    "2027 winter uniforms",
    "Down jackets and trousers",
    "1",
    "2027-03-31",
    "1.2万",
    "4",
    "y",
    "是",
    "2",
)

ORG_KEY = "bench-org"
START = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)


def make_clock() -> Callable[[], datetime]:
    """A fixed start that advances one second per call (no wall clock in the core)."""
    ticks: Iterator[int] = iter(range(10**12))
    return lambda: START + timedelta(seconds=next(ticks))


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    k = (len(sorted_values) - 1) * q
    lo = int(k)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (k - lo)


# ---- the measured work ---------------------------------------------------------------------


async def run_rep(coach: Coach, rep: int, latencies: list[float]) -> None:
    user_key = f"rep-{rep}"
    customer = f"{CUSTOMER} {rep}"
    for line in SCRIPT:
        inbound = Inbound(platform="console", org_key=ORG_KEY, user_key=user_key,
                          text=line.replace("{customer}", customer), user_name=f"Rep {rep}")
        t0 = time.perf_counter()
        await coach.handle(inbound)
        latencies.append(time.perf_counter() - t0)


async def run_turns(coach: Coach, reps: int, concurrency: int,
                    first: int = 0) -> tuple[float, list[float]]:
    latencies: list[float] = []
    gate = asyncio.Semaphore(concurrency)

    async def one(rep: int) -> None:
        async with gate:
            await run_rep(coach, rep, latencies)

    t0 = time.perf_counter()
    await asyncio.gather(*(one(rep) for rep in range(first, first + reps)))
    return time.perf_counter() - t0, latencies


# Core on the table, prepared once, on the session's connection: the cheapest one-row write the
# store can make through Database.run (the ORM path costs more), so the ratio is not flattered.
_INSERT_EVENT = insert(cast(Table, ProcessedEvent.__table__))


def _bare_insert(session: Session, event_id: str, now: datetime) -> None:
    session.connection().execute(_INSERT_EVENT, {"id": uuid.uuid4(), "platform": "bench",
                                                 "event_id": event_id, "processed_at": now})


async def run_bare(db: Database, count: int, concurrency: int) -> tuple[float, list[float]]:
    """`count` one-row insert+commit units of work through `Database.run`."""
    latencies: list[float] = []
    gate = asyncio.Semaphore(concurrency)
    now = START
    prefix = uuid.uuid4().hex[:8]

    async def one(i: int) -> None:
        async with gate:
            t0 = time.perf_counter()
            await db.run(_bare_insert, f"{prefix}-{i}", now)
            latencies.append(time.perf_counter() - t0)

    t0 = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(count)))
    return time.perf_counter() - t0, latencies


def _verify(session: Session) -> tuple[int, int, dict[str | None, int]]:
    accounts = session.execute(select(func.count()).select_from(Account)).scalar_one()
    opps = session.execute(select(func.count()).select_from(Opportunity)).scalar_one()
    verdicts = dict(session.execute(
        select(Opportunity.verdict, func.count()).group_by(Opportunity.verdict)).all())
    return accounts, opps, verdicts


async def bench(args: argparse.Namespace) -> int:
    drop: str | None = None
    tmp: tempfile.TemporaryDirectory[str] | None = None
    if args.database_url:
        url = args.database_url
        if make_url(url).get_backend_name() in ("postgresql", "postgres"):
            name = f"salescoach_bench_{uuid.uuid4().hex[:10]}"
            url = await create_database(url, name)
            drop = name
    else:
        tmp = tempfile.TemporaryDirectory(prefix="salescoach-bench-")
        url = f"sqlite:///{tmp.name}/bench.db"

    db = Database(url)
    try:
        await db.upgrade()
        renderer, engine = build_engine()
        coach = Coach(db, engine, renderer, clock=make_clock(), default_lang="en",
                      default_tz="UTC")

        # warm-up: one rep outside the figures (org creation, caches, connections)
        await run_rep(coach, -1, [])

        # Turns and bare inserts are measured in alternating rounds, so a change in what else
        # the machine is doing lands on both sides of the ratio rather than on one.
        wall = bare_wall = 0.0
        lat: list[float] = []
        bare_lat: list[float] = []
        rounds = max(1, min(args.rounds, args.reps))
        for r in range(rounds):
            first, last = args.reps * r // rounds, args.reps * (r + 1) // rounds
            took, lats = await run_turns(coach, last - first, args.concurrency, first=first)
            wall += took
            lat.extend(lats)
            took, lats = await run_bare(db, args.inserts * (r + 1) // rounds
                                        - args.inserts * r // rounds, args.concurrency)
            bare_wall += took
            bare_lat.extend(lats)
        # unloaded: one thing at a time, so a latency is the cost of the work, not queueing;
        # each solo rep is followed by as many bare inserts as it had turns
        solo_lat: list[float] = []
        solo_bare: list[float] = []
        for i in range(args.solo_reps):
            _, lats = await run_turns(coach, 1, 1, first=args.reps + i)
            solo_lat.extend(lats)
            _, lats = await run_bare(db, len(SCRIPT), 1)
            solo_bare.extend(lats)
        accounts, opps, verdicts = await db.run(_verify)
    finally:
        await db.dispose()
        if drop is not None:
            await drop_database(args.database_url, drop)
        if tmp is not None:
            tmp.cleanup()

    expected = args.reps + args.solo_reps + 1  # + the warm-up rep
    lat_ms = sorted(x * 1000 for x in lat)
    bare_ms = sorted(x * 1000 for x in bare_lat)
    turn_mean = statistics.fmean(lat_ms)
    bare_mean = statistics.fmean(bare_ms)
    result: dict[str, Any] = {
        "database": db.dialect,
        "cpus": len(os.sched_getaffinity(0)),
        "reps": args.reps,
        "concurrency": args.concurrency,
        "turns": len(lat),
        "wall_s": round(wall, 3),
        "turns_per_s": round(len(lat) / wall, 1),
        "turn_ms": {
            "mean": round(turn_mean, 3),
            "p50": round(percentile(lat_ms, 0.50), 3),
            "p90": round(percentile(lat_ms, 0.90), 3),
            "p99": round(percentile(lat_ms, 0.99), 3),
        },
        "bare_inserts": len(bare_lat),
        "bare_per_s": round(len(bare_lat) / bare_wall, 1),
        "bare_ms": {
            "mean": round(bare_mean, 3),
            "p50": round(percentile(bare_ms, 0.50), 3),
            "p99": round(percentile(bare_ms, 0.99), 3),
        },
        # time per durable turn over time per bare insert+commit, both at the same concurrency
        "ratio_turn_to_bare": round((wall / len(lat)) / (bare_wall / len(bare_lat)), 2),
        "unloaded": {
            "turns": len(solo_lat),
            "turn_ms_mean": round(statistics.fmean(solo_lat) * 1000, 3),
            "turn_ms_p50": round(percentile(sorted(solo_lat), 0.50) * 1000, 3),
            "turn_ms_p99": round(percentile(sorted(solo_lat), 0.99) * 1000, 3),
            "bare_ms_mean": round(statistics.fmean(solo_bare) * 1000, 3),
            "ratio_turn_to_bare": round(statistics.fmean(solo_lat) / statistics.fmean(solo_bare),
                                        2),
        },
        "accounts": accounts,
        "opportunities": opps,
        "verdicts": {str(k): v for k, v in verdicts.items()},
    }
    print(f"database          {result['database']} ({result['cpus']} CPU(s) available)")
    print(f"reps              {args.reps} x {len(SCRIPT)} turns, {args.concurrency} at a time")
    print(f"turns             {result['turns']}")
    print(f"wall time         {wall:.3f} s")
    print(f"durable turns/s   {result['turns_per_s']:.1f}")
    t = result["turn_ms"]
    print(f"turn latency ms   mean {t['mean']:.3f}  p50 {t['p50']:.3f}  p90 {t['p90']:.3f}  "
          f"p99 {t['p99']:.3f}")
    b = result["bare_ms"]
    print(f"bare insert+commit {len(bare_lat)} via Database.run: {result['bare_per_s']:.1f}/s, "
          f"mean {b['mean']:.3f} ms (p50 {b['p50']:.3f}, p99 {b['p99']:.3f})")
    print(f"ratio turn/bare   {result['ratio_turn_to_bare']:.2f}  (time per turn / time per bare "
          f"insert, same concurrency, {rounds} alternating rounds)")
    u = result["unloaded"]
    print(f"unloaded          {u['turns']} turns one at a time: mean {u['turn_ms_mean']:.3f} ms "
          f"(p50 {u['turn_ms_p50']:.3f}, p99 {u['turn_ms_p99']:.3f}); bare insert+commit "
          f"mean {u['bare_ms_mean']:.3f} ms; ratio {u['ratio_turn_to_bare']:.2f}")
    print(f"verify            accounts {accounts}, opportunities {opps}, verdicts {verdicts}")
    if args.json:
        print(json.dumps(result))

    ok = (accounts == expected and opps == expected
          and verdicts.get("opportunity", 0) == expected
          and len(lat) == args.reps * len(SCRIPT)
          and len(solo_lat) == args.solo_reps * len(SCRIPT))
    if not ok:
        print(f"FAILED: expected {expected} accounts and {expected} opportunities with verdict "
              "'opportunity' (reps + solo reps + 1 warm-up)", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--reps", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--database-url", default=None,
                        help="default: a fresh SQLite file in a temp dir; a PostgreSQL URL names "
                             "the server (a throw-away database is created there and dropped)")
    parser.add_argument("--inserts", type=int, default=2000,
                        help="bare insert+commit units of work to time (default 2000)")
    parser.add_argument("--rounds", type=int, default=5,
                        help="alternating rounds of turns and bare inserts (default 5)")
    parser.add_argument("--solo-reps", type=int, default=20,
                        help="reps run one at a time for the unloaded latencies (default 20)")
    parser.add_argument("--json", action="store_true", help="also print one JSON object")
    args = parser.parse_args(argv)
    if args.reps < 1 or args.concurrency < 1 or args.solo_reps < 1:
        parser.error("--reps, --solo-reps and --concurrency must be >= 1")
    return asyncio.run(bench(args))


if __name__ == "__main__":
    raise SystemExit(main())
