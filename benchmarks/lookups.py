"""Look-ups at scale: `account` with typos and `pipeline` for a team of 50, and CSV import speed.

Fills a scratch database with one org of 1,000 reps (20 managers with teams of 50), 100,000
accounts, 300,000 contacts and 200,000 opportunities (bulk inserts), then through `Coach.handle`
— the same path as a message from a rep — times:
- `account <name with a typo>` by an admin, who sees all 100,000 accounts (the worst case),
  half of them Latin names with one typo, half a Chinese part of a Chinese name;
- `pipeline team` by a manager of 50 reps (10,000 opportunities);
and the import of a 100,000-row accounts CSV (`store.csvio.import_file`), with the peak memory
the process reached.

    python benchmarks/lookups.py [--backend sqlite|postgresql|both] [--pg-url URL]
                                 [--accounts 100000] [--queries 300] [--json]

PostgreSQL runs in a database created for the run on the server of `--pg-url` (default
$SALESCOACH_TEST_DATABASE_URL) and dropped afterwards; SQLite in a temporary file.
Targets (from the issue): look-up p99 < 50 ms on PostgreSQL; import >= 5,000 rows/s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import Table, insert
from sqlalchemy.orm import Session

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bot.app import build_engine
from bot.coach import Coach
from bot.commands import load_commands
from dialogs.messages import Inbound
from store.csvio import import_file
from store.db import Database, create_database, drop_database
from store.models import Account, Contact, Identity, Opportunity, Org, User, name_key

NOW = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
ORG_KEY = "bench"
CHUNK = 5000

CITIES = ["Beijing", "Shanghai", "Harbin", "Daqing", "Tianjin", "Shenyang", "Dalian", "Jinan",
          "Qingdao", "Xi'an", "Chengdu", "Wuhan", "Nanjing", "Hangzhou", "Changchun", "Taiyuan",
          "Baotou", "Lanzhou", "Urumqi", "Kunming", "Guiyang", "Nanning", "Fuzhou", "Xiamen",
          "Hefei", "Zhengzhou", "Shijiazhuang", "Hohhot", "Yinchuan", "Xining"]
WORDS = ["Northern", "Eastern", "Golden", "Great Wall", "Red Star", "Pacific", "Yellow River",
         "Huaxia", "Zhongxing", "Hengtong", "Xinda", "Longma", "Tianhe", "Jinqiao", "Baoshan",
         "Hongda", "Kunlun", "Changjiang", "Songhua", "Minsheng"]
TRADES = ["Steel", "Oilfield", "Power", "Bus Group", "Cement", "Mining", "Chemical", "Bank",
          "Telecom", "Highway", "Railway", "Petroleum", "Coal", "Nonferrous", "Tourism",
          "Water", "Gas", "Port", "Airport", "Hospital"]
SUFFIXES = ["Co.", "Group", "Works", "Corporation", "Company", "Holdings", "Bureau", "Plant"]
ZH_CITIES = ["北京", "上海", "哈尔滨", "大庆", "天津", "沈阳", "大连", "济南", "青岛", "西安",
             "成都", "武汉", "南京", "杭州", "长春", "太原", "包头", "兰州", "昆明", "贵阳"]
ZH_WORDS = ["北方", "东方", "金城", "长城", "红星", "华夏", "中兴", "恒通", "信达", "龙马",
            "天河", "金桥", "宝山", "宏达", "昆仑", "长江", "松花江", "民生"]
ZH_TRADES = ["钢铁", "油田", "电力", "公交集团", "水泥", "矿业", "化工", "银行", "通信", "高速公路",
             "铁路", "石化", "煤业", "有色金属", "旅游", "水务", "燃气", "港务"]
ZH_SUFFIXES = ["有限公司", "集团", "股份有限公司", "总厂", "分公司"]
STAGES = ["analysis", "trust", "needs", "value", "commitment", "deposit", "order", "collection",
          "won", "lost", "keep_in_touch"]
ROLES = [["decision_maker"], ["initiator"], ["designer"], ["evaluator"], ["user"], []]


def uid(rng: random.Random) -> uuid.UUID:
    return uuid.UUID(int=rng.getrandbits(128), version=4)


def account_name(rng: random.Random, i: int) -> str:
    if i % 2:
        return (f"{rng.choice(ZH_CITIES)}{rng.choice(ZH_WORDS)}{rng.choice(ZH_TRADES)}"
                f"{rng.choice(ZH_SUFFIXES)}")
    return (f"{rng.choice(CITIES)} {rng.choice(WORDS)} {rng.choice(TRADES)} "
            f"{rng.choice(SUFFIXES)}")


def typo(rng: random.Random, name: str) -> str:
    """A Latin name with one typo in a word, or a Chinese name cut to a part of it."""
    if any("\u4e00" <= c <= "\u9fff" for c in name):
        start = rng.randrange(0, max(1, len(name) - 4))
        return name[start:start + rng.choice((3, 4, 5))]
    words = [w for w in name.split() if len(w) > 4] or name.split()
    word = rng.choice(words)
    pos = rng.randrange(1, len(word) - 1)
    kind = rng.randrange(3)
    if kind == 0:  # swap two letters
        changed = word[:pos - 1] + word[pos] + word[pos - 1] + word[pos + 1:]
    elif kind == 1:  # drop one
        changed = word[:pos] + word[pos + 1:]
    else:  # a wrong letter
        changed = word[:pos] + rng.choice("aeiouxz") + word[pos + 1:]
    query = name.replace(word, changed, 1)
    words_in = query.split()
    return " ".join(words_in[: rng.choice((2, 3, len(words_in)))])  # people type part of it


def _insert(session: Session, model: Any, rows: list[dict[str, Any]]) -> None:
    table: Table = model.__table__
    session.execute(insert(table), rows)


async def fill(db: Database, accounts: int, contacts: int, opps: int,
               rng: random.Random) -> dict[str, Any]:
    """The org, its people and the customer data, in chunks of CHUNK rows per unit of work."""
    org_id = uid(rng)
    managers = [uid(rng) for _ in range(20)]
    reps = [uid(rng) for _ in range(1000)]
    admin = uid(rng)

    def people(session: Session) -> None:
        session.add(Org(id=org_id, name="Bench", platform="console", external_id=ORG_KEY,
                        settings={}, created_at=NOW, updated_at=NOW))
        session.flush()
        users = [{"id": admin, "org_id": org_id, "display_name": "admin", "role": "admin"}]
        users += [{"id": m, "org_id": org_id, "display_name": f"manager{i}", "role": "manager"}
                  for i, m in enumerate(managers)]
        _insert(session, User, users)
        _insert(session, User, [{"id": r, "org_id": org_id, "display_name": f"rep{i}",
                                 "role": "rep", "manager_id": managers[i // 50]}
                                for i, r in enumerate(reps)])
        _insert(session, Identity, [{"id": uuid.uuid4(), "org_id": org_id, "user_id": u["id"],
                                     "platform": "console", "external_id": u["display_name"]}
                                    for u in users])

    await db.run(people)
    account_ids: list[uuid.UUID] = []
    account_owner: list[uuid.UUID] = []
    names: list[str] = []

    async def chunks(total: int, make: Any, model: Any) -> None:
        for start in range(0, total, CHUNK):
            rows = [make(i) for i in range(start, min(total, start + CHUNK))]
            await db.run(_insert, model, rows)

    def make_account(i: int) -> dict[str, Any]:
        name = account_name(rng, i)
        account_id = uid(rng)
        owner = reps[rng.randrange(len(reps))]
        account_ids.append(account_id)
        account_owner.append(owner)
        names.append(name)
        return {"id": account_id, "org_id": org_id, "owner_id": owner, "name": name,
                "name_key": name_key(name), "purchase_departments": [], "created_at": NOW,
                "updated_at": NOW}

    def make_contact(i: int) -> dict[str, Any]:
        a = rng.randrange(len(account_ids))
        name = (f"{rng.choice('王李张刘陈杨赵黄周吴')}{rng.choice('伟芳娜敏静丽强磊军洋')}"
                f" Contact {i}")
        return {"id": uid(rng), "org_id": org_id, "account_id": account_ids[a],
                "owner_id": account_owner[a], "name": name, "name_key": name_key(name),
                "buying_roles": rng.choice(ROLES),
                "relationship_stage": rng.choice(["acquaint", "date", "trust", "alliance"]),
                "insider_level": rng.choice(["none", "low", "mid", "high"]),
                "comm_style": rng.choice(["owl", "tiger", "koala", "peacock", "chameleon"]),
                "created_at": NOW, "updated_at": NOW}

    def make_opp(i: int) -> dict[str, Any]:
        a = rng.randrange(len(account_ids))
        entered = NOW - timedelta(days=rng.randrange(1, 120))
        return {"id": uid(rng), "org_id": org_id, "account_id": account_ids[a],
                "owner_id": account_owner[a], "name": f"{names[a][:40]} uniforms {i}",
                "stage": rng.choice(STAGES), "amount": Decimal(rng.randrange(10, 900) * 10000),
                "currency": "CNY", "qualification": {"need": True, "budget": "1M"},
                "verdict_reasons": [], "next_step": "Call",
                "next_step_due": (NOW + timedelta(days=rng.randrange(-10, 20))).date(),
                "stage_entered_at": entered,
                "last_activity_at": entered + timedelta(days=rng.randrange(0, 5)),
                "created_at": entered, "updated_at": NOW}

    await chunks(accounts, make_account, Account)
    await chunks(contacts, make_contact, Contact)
    await chunks(opps, make_opp, Opportunity)
    return {"org_id": org_id, "names": names, "manager": "manager3"}


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def time_turns(coach: Coach, user: str, texts: list[str],
                     kinds: dict[str, int] | None = None) -> list[float]:
    """Milliseconds per turn; `kinds` counts the replies (card, pick list, error)."""
    out = []
    for text in texts:
        started = time.perf_counter()
        reply = await coach.handle(Inbound(platform="console", org_key=ORG_KEY, user_key=user,
                                           text=text))
        out.append((time.perf_counter() - started) * 1000)
        if not reply.messages or reply.messages[0].kind not in ("card", "pick", "error"):
            raise SystemExit(f"unexpected reply to {text!r}: {reply.messages[:1]}")
        if kinds is not None:
            kinds[reply.messages[0].kind] = kinds.get(reply.messages[0].kind, 0) + 1
    return out


def write_csv(path: Path, rows: int, rng: random.Random) -> None:
    with path.open("w", encoding="utf-8", newline="") as out:
        out.write("external_id,name,owner,industry,nature,size_employees,"
                  "last_purchase_amount,address\n")
        for i in range(rows):
            name = account_name(rng, i).replace(",", " ")
            out.write(f"IMP-{i},{name},rep{i % 1000},oil_gas,state_owned,"
                      f"{rng.randrange(50, 90000)},{rng.randrange(1, 9000) * 1000},"
                      f"\"Street {i}, District {i % 50}\"\n")


async def run_backend(url: str, args: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(7)
    db = Database(url)
    result: dict[str, Any] = {"backend": db.dialect}
    try:
        await db.upgrade()
        started = time.perf_counter()
        data = await fill(db, args.accounts, args.accounts * 3, args.accounts * 2, rng)
        result["fill_s"] = round(time.perf_counter() - started, 1)
        if db.dialect == "postgresql":
            await db.run(lambda s: s.connection().exec_driver_sql("ANALYZE"))
        renderer, engine = build_engine()
        coach = Coach(db, engine, renderer, clock=lambda: NOW, registry=load_commands())
        queries = [typo(rng, rng.choice(data["names"])) for _ in range(args.queries)]
        await time_turns(coach, "admin", ["account warm up", "pipeline team"])  # caches
        kinds: dict[str, int] = {}
        account_ms = await time_turns(coach, "admin", [f"account {q}" for q in queries], kinds)
        pipeline_ms = await time_turns(coach, data["manager"], ["pipeline team"] * args.pipelines)
        result.update(
            account_p50_ms=round(statistics.median(account_ms), 1),
            account_p99_ms=round(percentile(account_ms, 99), 1),
            account_replies=kinds,
            pipeline_p50_ms=round(statistics.median(pipeline_ms), 1),
            pipeline_p99_ms=round(percentile(pipeline_ms, 99), 1),
        )
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "accounts.csv"
            write_csv(path, args.import_rows, rng)
            rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            started = time.perf_counter()
            imported = await import_file(db, path, org_id=data["org_id"], kind="accounts",
                                         now=NOW)
            seconds = time.perf_counter() - started
            rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        if not imported.committed or imported.created != args.import_rows:
            raise SystemExit(f"import failed: {imported.problems[:3]}")
        result.update(import_rows=args.import_rows, import_s=round(seconds, 1),
                      import_rows_per_s=round(args.import_rows / seconds),
                      import_peak_rss_growth_mb=round((rss_after - rss_before) / 1024, 1),
                      file_mb=None)
    finally:
        await db.dispose()
    return result


def _scratch_urls(args: argparse.Namespace) -> Iterator[tuple[str, str | None]]:
    if args.backend in ("sqlite", "both"):
        yield "sqlite", None
    if args.backend in ("postgresql", "both"):
        if not args.pg_url:
            print("no PostgreSQL URL (--pg-url or SALESCOACH_TEST_DATABASE_URL): skipped")
        else:
            yield "postgresql", args.pg_url


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--pg-url", default=os.environ.get("SALESCOACH_TEST_DATABASE_URL"))
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--pipelines", type=int, default=50)
    parser.add_argument("--import-rows", type=int, default=100_000)
    parser.add_argument("--json", action="store_true")
    args, _unknown = parser.parse_known_args()  # `make bench ARGS=...` passes every benchmark's
    results = []
    for backend, server in _scratch_urls(args):
        if backend == "sqlite":
            with tempfile.TemporaryDirectory() as tmp:
                results.append(await run_backend(f"sqlite:///{tmp}/bench.db", args))
        else:
            assert server is not None
            name = f"salescoach_bench_{uuid.uuid4().hex[:8]}"
            url = await create_database(server, name)
            try:
                results.append(await run_backend(url, args))
            finally:
                await drop_database(server, name)
    for r in results:
        if args.json:
            print(json.dumps(r))
            continue
        print(f"[{r['backend']}] {args.accounts:,} accounts, {args.accounts * 3:,} contacts, "
              f"{args.accounts * 2:,} opportunities (filled in {r['fill_s']} s)")
        print(f"  account <typo>  p50 {r['account_p50_ms']} ms  p99 {r['account_p99_ms']} ms"
              f"  ({args.queries} look-ups by an admin who sees every account; replies: "
              f"{', '.join(f'{n} {k}' for k, n in sorted(r['account_replies'].items()))})")
        print(f"  pipeline team   p50 {r['pipeline_p50_ms']} ms  p99 {r['pipeline_p99_ms']} ms"
              f"  (a manager of 50 reps)")
        print(f"  import          {r['import_rows']:,} rows in {r['import_s']} s = "
              f"{r['import_rows_per_s']:,} rows/s; peak memory grew "
              f"{r['import_peak_rss_growth_mb']} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
