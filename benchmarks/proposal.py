"""Time to generate the proposal (建议书) as Markdown and .docx for a well-documented opportunity.

Seeds one opportunity with 20 contacts, 50 SPIN entries and 10 FAB entries (plus a needs tree,
SWOT, competitor notes and buying signals), then times, per document:
- gather + render: `bot.proposal.gather` (its fixed handful of queries) and both files;
- render only: both files from the already gathered data (and Markdown / .docx apart).
It opens the last .docx with python-docx and checks the seven parts and row counts, so a broken
document cannot pass as a fast one (exit status 1).

    python benchmarks/proposal.py [--runs 30] [--lang en|zh] [--database-url URL]

Wall time includes waiting for the CPU on a busy machine; the CPU column is this process's own.

Target (issue 3): under 200 ms per document.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from sqlalchemy.orm import Session

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bot import proposal as doc
from dialogs.render import load_catalogs
from store.db import Database, create_database, drop_database
from store.models import (
    Account,
    BuyingSignal,
    CompetitorNote,
    Contact,
    FabEntry,
    Need,
    Opportunity,
    Org,
    SpinEntry,
    SwotEntry,
    User,
)

NOW = datetime(2026, 11, 27, 9, tzinfo=UTC)
TARGET_MS = 200.0


def seed(session: Session, contacts: int = 20, spin: int = 50, fab: int = 10) -> tuple[
        uuid.UUID, uuid.UUID]:
    org = Org(name="鸭鸭团购事业部 Yaya Group Orders", platform="console", external_id="bench")
    session.add(org)
    session.flush()
    user = User(org_id=org.id, display_name="Li Lei 李雷")
    session.add(user)
    session.flush()
    account = Account(org_id=org.id, owner_id=user.id, name="大庆油田 (Daqing Oilfield)",
                      name_key="大庆油田 (daqing oilfield)", industry="oil_gas",
                      nature="state_owned", size_employees=200000,
                      business="Oil and gas exploration and production; six drilling companies.",
                      last_purchase_qty=Decimal(18000), last_purchase_amount=Decimal("5400000"),
                      last_purchase_currency="CNY", last_purchase_satisfaction=3,
                      address="黑龙江省大庆市萨尔图区", postcode="163453",
                      purchase_departments=["procurement", "union", "user_dept", "finance"])
    session.add(account)
    session.flush()
    roles = ("decision_maker", "initiator", "designer", "evaluator", "user")
    people = []
    for i in range(contacts):
        person = Contact(org_id=org.id, account_id=account.id, owner_id=user.id,
                         name=f"联系人 {i} (Contact {i})", name_key=f"contact {i}",
                         title="Section chief", department="Materials Supply", level="middle",
                         function="procurement", buying_roles=[roles[i % 5]],
                         personal_notes="private: never in a proposal")
        session.add(person)
        people.append(person)
    for i in range(3):
        session.add(CompetitorNote(org_id=org.id, account_id=account.id,
                                   competitor=f"Competitor {i}", product=f"Padded coat {i}",
                                   strengths="Lowest price",
                                   weaknesses="Fill clumps after washing"))
    opp = Opportunity(org_id=org.id, account_id=account.id, owner_id=user.id,
                      name="2027 winter down jackets for drilling crews",
                      product="YY-Polar 900 work jacket + down trousers", stage="value",
                      phase="evaluation", amount=Decimal("6800000"), currency="CNY",
                      expected_close=date(2027, 1, 6), next_step="Present the FAB sheet",
                      next_step_due=date(2026, 12, 1), last_activity_at=NOW)
    session.add(opp)
    session.flush()
    parent: uuid.UUID | None = None
    needs = []
    for i, kind in enumerate(("goal", "problem", "solution", "product", "criterion") * 3):
        need = Need(id=uuid.uuid4(), org_id=org.id, opportunity_id=opp.id,
                    parent_id=parent if kind != "goal" else None, kind=kind,
                    text=f"{kind} {i}: keep crews warm at -35 °C 保暖", position=i)
        session.add(need)
        needs.append(need)
        parent = need.id
    session.flush()
    for i in range(spin):
        kind = "SPIN"[i % 4]
        session.add(SpinEntry(org_id=org.id, opportunity_id=opp.id, kind=kind,
                              contact_id=people[i % contacts].id,
                              question=f"Question {i} ({kind}): how many crew need gear?",
                              answer=f"Answer {i}: about 18,000 across six drilling companies",
                              asked_at=NOW - timedelta(days=60 - i)))
    for i in range(fab):
        session.add(FabEntry(org_id=org.id, opportunity_id=opp.id, product=f"YY-Polar {i % 3}",
                             feature=f"Feature {i}: 90% duck down, fill power 700",
                             advantage=f"Advantage {i}: warmer at half the weight",
                             benefit=f"Benefit {i}: no crew member off sick from the cold",
                             need_id=needs[4].id if i == 0 else None, position=i))
    for i, quadrant in enumerate("swotswot"):
        session.add(SwotEntry(org_id=org.id, opportunity_id=opp.id, quadrant=quadrant,
                              source="quality", text=f"SWOT {quadrant} {i}"))
    for code in ("asks_references", "asks_price_details", "asks_delivery_time"):
        session.add(BuyingSignal(org_id=org.id, opportunity_id=opp.id, signal=code,
                                 note="Asked in the evaluation meeting", observed_at=NOW))
    session.flush()
    return org.id, opp.id


Samples = tuple[list[float], list[float]]  # wall-clock ms, CPU ms of this process


def timed(fn: Callable[[], object], runs: int) -> Samples:
    wall, cpu = [], []
    for _ in range(runs):
        started, started_cpu = time.perf_counter(), time.process_time()
        fn()
        wall.append((time.perf_counter() - started) * 1000)
        cpu.append((time.process_time() - started_cpu) * 1000)
    return wall, cpu


def report(label: str, samples: Samples) -> None:
    """Wall time, and CPU time (which a busy shared machine inflates much less)."""
    wall, cpu = samples
    ordered = sorted(wall)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    verdict = "ok" if statistics.median(wall) < TARGET_MS else "OVER TARGET"
    print(f"{label:<34} median {statistics.median(wall):7.1f} ms   p95 {p95:7.1f} ms   "
          f"CPU median {statistics.median(cpu):7.1f} ms   {verdict}")


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--lang", choices=("en", "zh"), default="en")
    parser.add_argument("--database-url", default=None,
                        help="a PostgreSQL server URL (a scratch database is created there)")
    args = parser.parse_args()
    scratch = None
    with tempfile.TemporaryDirectory() as tmp:
        if args.database_url:
            scratch = f"salescoach_bench_{uuid.uuid4().hex[:8]}"
            url = await create_database(args.database_url, scratch)
        else:
            url = f"sqlite:///{tmp}/bench.db"
        db = Database(url)
        try:
            await db.upgrade()
            org_id, opp_id = await db.run(seed)
            writer = doc.ProposalWriter(load_catalogs())
            today = NOW.date()

            def gather(session: Session) -> doc.ProposalData:
                data = doc.gather(session, org_id, opp_id)
                assert data is not None
                return data

            data = await db.run(gather)
            writer.write(data, args.lang, today)  # warm up: templates compile on first use

            def both(d: doc.ProposalData) -> tuple[str, bytes]:
                return (writer.markdown(d, args.lang, today), writer.docx(d, args.lang, today))

            def end_to_end(session: Session) -> Samples:
                return timed(lambda: both(gather(session)), args.runs)

            print(f"proposal for 20 contacts, 50 SPIN entries, 10 FAB entries "
                  f"({db.dialect}, {args.lang}, {args.runs} runs; target < {TARGET_MS:.0f} ms)")
            report("gather + render (.md and .docx)", await db.run(end_to_end))
            report("render only (.md and .docx)", timed(lambda: both(data), args.runs))
            report("  Markdown only", timed(lambda: writer.markdown(data, args.lang, today),
                                            args.runs))
            report("  .docx only", timed(lambda: writer.docx(data, args.lang, today), args.runs))
            _, docx_bytes = both(data)
        finally:
            await db.dispose()
            if scratch:
                await drop_database(args.database_url, scratch)
    from docx import Document

    document = Document(io.BytesIO(docx_bytes))
    headings = [p.text for p in document.paragraphs
                if p.style is not None and p.style.name == "Heading 1"]
    fab_rows = max(len(t.rows) for t in document.tables)
    text = "\n".join(p.text for p in document.paragraphs)
    ok = (len(headings) == 7 and fab_rows >= 11 and (len(data.contacts), len(data.spin),
                                                     len(data.fab)) == (20, 50, 10)
          and "private: never" not in text and "Answer 49" in text)
    print(f"check: {len(headings)} parts, {fab_rows - 1} rows in the largest table, "
          f"{len(docx_bytes):,} bytes .docx -> {'ok' if ok else 'FAILED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
