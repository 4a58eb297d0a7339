"""One nudge pass and one digest pass, at two table sizes with the same amount due.

Generates, in a scratch PostgreSQL database (created and dropped here), one org with 200
managers and 1,000 reps, then N opportunities and N invoices (N = 100,000 and 1,000,000 by
default) of which the same 5,000 opportunities are stalled and the same 5,000 invoices overdue
at both sizes; everything else is recent, closed, paid or not yet due. Data is made with
`INSERT … SELECT generate_series` in the server. It then times, at each size:

- the daily refresh of the team's usual time per stage (one aggregate, once a day),
- one nudge pass (every rule's query, raising 10,000 nudges, rendering and queueing the posts),
- a second nudge pass (nothing new: the steady state of a pass every minute),
- one digest pass for the 200 managers: the data (funnel, changes, stalled, receivables,
  coaching, failures) and, separately, the 200 funnel charts,

and prints the times and the ratio between the sizes. Targets (issue 6): a nudge pass over
1,000,000 + 1,000,000 rows under 2 s; cost growing with what is due (ratio under 3). The first
pass is also shown per phase (the rules' queries, the insert of the nudges, rendering, queueing).

With `--keep` the generated database is kept (named after its size and amount due, with a
marker table saying what it holds) and reused by the next run with `--keep`: only what a pass
writes (nudges, outbox, stage norms) is emptied, so re-measuring does not regenerate 4M rows.
`--explain` prints the plan (EXPLAIN ANALYZE) of every query the first pass ran.

    python benchmarks/nudge_scan.py [--sizes 100000 1000000] [--due 5000] [--keep] [--explain]
        [--server postgresql://postgres@127.0.0.1:5432/postgres] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import hashlib
import json
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import event, make_url, text
from sqlalchemy.orm import Session

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bot import digest, nudges
from bot.charts import render_funnel
from dialogs.render import Renderer
from store.db import Database, create_database, drop_database

MIGRATIONS = Path(__file__).resolve().parent.parent / "store" / "migrations" / "versions"
NOW = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)  # a Monday, 10:00 UTC
ORG = uuid.UUID("00000000-0000-0000-0000-0000000b0001")
MANAGERS = 200
REPS_PER_MANAGER = 5
ACCOUNTS = 20_000
# opportunities that entered a stage since yesterday, and new ones: the same at both sizes
CHANGED = 500

# stalled limits (bot/rules.yaml) are 3..14 days: "recent" activity is 0..2 days old
FILL = """
INSERT INTO orgs (id, name, platform, external_id, default_lang, tz, settings)
VALUES (:org, 'Bench', 'slack', 'TBENCH', 'en', 'UTC',
        '{"working_hours": {"start": "00:00", "end": "23:59"}}');

INSERT INTO users (id, org_id, display_name, role, lang, active)
SELECT md5('m' || i)::uuid, :org, 'Manager ' || i, 'manager', 'en', true
FROM generate_series(1, :managers) i;

INSERT INTO users (id, org_id, display_name, role, manager_id, lang, active)
SELECT md5('r' || i)::uuid, :org, 'Rep ' || i, 'rep', md5('m' || (1 + i % :managers))::uuid,
       'en', true
FROM generate_series(1, :reps) i;

INSERT INTO identities (id, org_id, user_id, platform, external_id)
SELECT gen_random_uuid(), :org, id, 'slack', 'U' || substr(md5(id::text), 1, 10)
FROM users WHERE org_id = :org;

INSERT INTO team_channels (id, org_id, platform, channel_id, name, bound_at, active)
VALUES (gen_random_uuid(), :org, 'slack', 'CBENCH', 'sales', :now, true);

INSERT INTO accounts (id, org_id, owner_id, name, name_key, status, purchase_departments,
                      created_at, updated_at)
SELECT md5('a' || i)::uuid, :org, md5('r' || (1 + i % :reps))::uuid, 'Account ' || i,
       'account ' || i, 'active', '[]', :now - interval '300 days', :now
FROM generate_series(1, :accounts) i;

-- opportunities: i <= :due are open and stalled (60 days without activity, 90 in the stage);
-- then :changed entered their stage 12 hours ago, the last :changed are new; the rest are
-- active (activity in the last 2 days, 8 to 60 days in the stage) or closed
INSERT INTO opportunities (id, org_id, account_id, owner_id, name, stage, amount, currency,
                           qualification, verdict_reasons, stage_entered_at,
                           last_activity_at, next_step_due, created_at, updated_at)
SELECT gen_random_uuid(), :org, md5('a' || (1 + i % :accounts))::uuid,
       md5('r' || (1 + (i % :accounts) % :reps))::uuid, 'Opportunity ' || i,
       CASE WHEN i <= :due
            THEN (ARRAY['analysis','trust','needs','value','commitment','deposit','order',
                        'collection'])[1 + i % 8]
            ELSE (ARRAY['analysis','trust','needs','value','commitment','deposit','order',
                        'collection','won','lost'])[1 + i % 10] END,
       (10000 + (i::bigint * 7919) % 990000)::numeric(18, 2), 'CNY', '{}', '[]',
       CASE WHEN i <= :due THEN :now - interval '90 days'
            WHEN i <= :due + :changed THEN :now - interval '12 hours'
            ELSE :now - make_interval(days => 8 + i % 53) END,
       CASE WHEN i <= :due THEN :now - interval '60 days'
            ELSE :now - make_interval(hours => i % 48) END,
       CASE WHEN i % 3 = 0 THEN (:now + make_interval(days => 1 + i % 30))::date END,
       CASE WHEN i > :n - :changed THEN :now - interval '6 hours'
            ELSE :now - interval '200 days' END, :now
FROM generate_series(1, :n) i;

-- invoices: i <= :due are open and 1..150 days overdue; the rest paid, or open and not due
INSERT INTO invoices (id, org_id, account_id, number, amount, currency, issued_on, due_on,
                      status, created_at, updated_at)
SELECT gen_random_uuid(), :org, md5('a' || (1 + i % :accounts))::uuid, 'INV-' || i,
       (5000 + (i::bigint * 104729) % 900000)::numeric(18, 2), 'CNY',
       (:now - interval '200 days')::date,
       CASE WHEN i <= :due THEN (:now - make_interval(days => 1 + i % 150))::date
            WHEN i % 2 = 0 THEN (:now - make_interval(days => 1 + i % 150))::date
            ELSE (:now + make_interval(days => 1 + i % 60))::date END,
       CASE WHEN i <= :due THEN 'open' WHEN i % 2 = 0 THEN 'paid' ELSE 'open' END,
       :now - interval '200 days', :now
FROM generate_series(1, :n) i;
"""


def fill(session: Session, n: int, due: int) -> None:
    params = {"org": ORG, "managers": MANAGERS, "reps": MANAGERS * REPS_PER_MANAGER,
              "accounts": ACCOUNTS, "n": n, "due": due, "now": NOW, "changed": CHANGED}
    # asyncpg needs the parameter's type where the server cannot infer it
    sql = "\n".join(line for line in FILL.splitlines() if not line.startswith("--"))
    sql = sql.replace(":now", "CAST(:now AS timestamptz)")
    for statement in sql.split(";\n"):
        if statement.strip():
            session.execute(text(statement), {k: v for k, v in params.items()
                                              if f":{k}" in statement})


def analyze(session: Session) -> None:
    session.execute(text("ANALYZE"))


MARKER = "bench_marker"


def fingerprint() -> str:
    """What the kept data was made with: FILL and the migrations (an index added to a
    migration in place would not show in Alembic's revision), so a change regenerates it."""
    digest = hashlib.sha256(FILL.encode())
    for path in sorted(MIGRATIONS.glob("*.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def mark(session: Session, n: int, due: int) -> None:
    session.execute(text(f"CREATE TABLE {MARKER} (n bigint, due bigint, version text)"))
    session.execute(text(f"INSERT INTO {MARKER} VALUES (:n, :due, :v)"),
                    {"n": n, "due": due, "v": fingerprint()})


def holds(session: Session, n: int, due: int) -> bool:
    """Whether this database was filled by this benchmark with `n` rows and `due` due."""
    if session.scalar(text("SELECT to_regclass(:t) IS NOT NULL"), {"t": MARKER}) is not True:
        return False
    row = session.execute(text(f"SELECT n, due, version FROM {MARKER}")).first()
    return row is not None and tuple(row) == (n, due, fingerprint())


def reset(session: Session) -> None:
    """Forget what earlier passes wrote; the generated data stays."""
    session.execute(text("TRUNCATE nudges, outbox, stage_norms"))


async def database(server: str, n: int, due: int, keep: bool) -> tuple[str, float, bool]:
    """The benchmark's database: (url, seconds spent generating, whether it was reused)."""
    if keep:
        name = f"salescoach_bench_keep_{n}_{due}"
        url = make_url(server).set(database=name).render_as_string(hide_password=False)
        db = Database(url)
        try:
            if await db.run(holds, n, due):
                await db.upgrade()
                await db.run(reset)
                await db.run(analyze)
                return url, 0.0, True
        except Exception:  # no such database yet, or a half-made one
            pass
        finally:
            await db.dispose()
        await drop_database(server, name)
    else:
        name = f"salescoach_bench_{uuid.uuid4().hex[:8]}"
    url = await create_database(server, name)
    db = Database(url)
    try:
        await db.upgrade()
        started = time.perf_counter()
        await db.run(fill, n, due)
        await db.run(analyze)
        if keep:
            await db.run(mark, n, due)
        return url, time.perf_counter() - started, False
    finally:
        await db.dispose()


class Statements:
    """The SELECTs a pass sends, with their parameters, to EXPLAIN afterwards."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, Any]] = []
        self.on = False

    def __call__(self, _conn: Any, _cursor: Any, statement: str, parameters: Any,
                 _context: Any, _executemany: bool) -> None:
        if self.on and statement.lstrip().upper().startswith("SELECT"):
            self.seen.append((statement, parameters))

    def explain(self, session: Session) -> list[str]:
        out = []
        for statement, parameters in self.seen:
            rows = session.connection().exec_driver_sql(
                "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY ON) " + statement,
                parameters).all()
            out.append(" ".join(statement.split())[:160] + "\n  "
                       + "\n  ".join(r[0][:160] for r in rows))
        return out


async def measure(server: str, n: int, due: int, *, keep: bool = False,
                  explain: bool = False, freeze: bool = True) -> dict[str, Any]:
    url, generated, reused = await database(server, n, due, keep)
    name = make_url(url).database
    db = Database(url)
    renderer = Renderer()
    statements = Statements()
    if explain:
        assert db._async is not None
        event.listen(db._async.sync_engine, "before_cursor_execute", statements)
    if freeze:  # what `salescoach serve` does once its scheduler starts (bot/scheduler.py)
        gc.collect()
        gc.freeze()
    try:
        t = time.perf_counter()
        await db.run(nudges.refresh_norms, ORG, NOW)
        norms = time.perf_counter() - t

        statements.on = True
        t = time.perf_counter()
        first = await db.run(nudges.run_pass, renderer, NOW)
        nudge_pass = time.perf_counter() - t
        statements.on = False
        plans = await db.run(statements.explain) if explain else []

        await db.run(analyze)  # what autovacuum does after a burst of inserts
        t = time.perf_counter()
        second = await db.run(nudges.run_pass, renderer, NOW)
        steady_pass = time.perf_counter() - t

        t = time.perf_counter()
        recipients = await db.run(digest.due_recipients, NOW)
        snapshot = await db.run(digest.org_snapshot, ORG, NOW)
        datas = [await db.run(digest.gather, r, NOW, snapshot) for r in recipients]
        texts = [digest.render_text(renderer, d) for d in datas]
        digest_data = time.perf_counter() - t

        t = time.perf_counter()
        for d in datas:
            render_funnel(digest.funnel_bars(renderer, d), "Funnel")
        charts = time.perf_counter() - t
        assert len(first.raised) >= 2 * due, len(first.raised)
        assert second.raised == []
        assert len(recipients) == MANAGERS and all(texts)
        return {"rows": n, "generate_s": generated, "reused": reused, "norms_s": norms,
                "nudge_pass_s": nudge_pass, "phases": dict(first.timings),
                "nudges": len(first.raised),
                "posts": len(first.posts), "steady_pass_s": steady_pass,
                "steady_phases": dict(second.timings),
                "digest_data_s": digest_data, "digests": len(datas), "charts_s": charts,
                "plans": plans}
    finally:
        await db.dispose()
        if not keep and name:
            await drop_database(server, name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--due", type=int, default=5_000)
    parser.add_argument("--server", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--keep", action="store_true",
                        help="keep the generated databases and reuse them next time")
    parser.add_argument("--explain", action="store_true",
                        help="print the plans of the first pass's queries")
    parser.add_argument("--no-freeze", action="store_true",
                        help="leave the start-up heap to the collector (serve freezes it)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = [asyncio.run(measure(args.server, n, args.due, keep=args.keep,
                                   explain=args.explain, freeze=not args.no_freeze))
               for n in args.sizes]
    small, large = results[0], results[-1]
    ratios = {key: large[key] / small[key] for key in
              ("norms_s", "nudge_pass_s", "steady_pass_s", "digest_data_s", "charts_s")}
    if args.json:
        print(json.dumps({"results": results, "ratios": ratios}, indent=2))
        return
    for r in results:
        for plan in r["plans"]:
            print(plan)
        phases = " ".join(f"{k} {v:.3f}s" for k, v in r["phases"].items())
        steady = " ".join(f"{k} {v:.3f}s" for k, v in r["steady_phases"].items())
        print(f"{r['rows']:,}: first pass {phases}; second pass {steady}"
              + (" (kept data reused)" if r["reused"] else ""))
    print(f"{'rows (opps + invoices)':>24} {'generate':>9} {'norms':>7} {'nudge pass':>11} "
          f"{'2nd pass':>9} {'digest data':>12} {'200 charts':>11}")
    for r in results:
        print(f"{r['rows']:>11,} + {r['rows']:<10,} {r['generate_s']:>8.1f}s "
              f"{r['norms_s']:>6.3f}s {r['nudge_pass_s']:>10.3f}s {r['steady_pass_s']:>8.3f}s "
              f"{r['digest_data_s']:>11.3f}s {r['charts_s']:>10.3f}s")
    print(f"{'ratio large/small':>24} {'':>9} {ratios['norms_s']:>6.2f}x "
          f"{ratios['nudge_pass_s']:>10.2f}x {ratios['steady_pass_s']:>8.2f}x "
          f"{ratios['digest_data_s']:>11.2f}x {ratios['charts_s']:>10.2f}x")
    print(f"nudge pass: {large['nudges']:,} nudges raised, {large['posts']:,} posts queued; "
          f"target < 2 s at the large size and ratio < 3")


if __name__ == "__main__":
    main()
