"""The six-step method end to end in the terminal, on the demo company, in English and Chinese.

`tests/scenarios.py` (METHOD_EN, METHOD_ZH) takes the demo's step-1 opportunity to "won — all
collected": every `advance` is tried before and after its step's end marker is recorded. The
in-process runs wire the app as `bot/app.py` does (flows, commands, a fake clock) on SQLite and
PostgreSQL and then check every row the conversation wrote; one run goes through the real
`salescoach demo` + `salescoach chat` with piped stdin.
"""

from __future__ import annotations

import subprocess
import uuid
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bot.commands import load_commands
from bot.demo import demo_id, load_demo
from store.db import Database
from store.models import (
    Activity,
    BuyingSignal,
    CollectionAction,
    Contact,
    FabEntry,
    Invoice,
    Need,
    Opportunity,
    Payment,
    SpinEntry,
    SwotEntry,
)
from tests import scenarios as sc
from tests.conversation_checks import (
    START,
    Transcript,
    check_no_failure,
    converse,
    salescoach_cmd,
    salescoach_env,
    sql,
)

OPP_ID = demo_id("opportunity", "bank-uniforms")
QIAN_YU = demo_id("contact", "qianyu")
LILEI = demo_id("user", "lilei")


async def run_script(db: Database, script: list[tuple[str, str | None]],
                     lang: str | None = None) -> list[tuple[str, str]]:
    """The demo company loaded at START, then `script` typed by lilei in the console."""
    await db.run(load_demo, now=START)
    chat = await converse(db, [line for line, _ in script], user=sc.METHOD_USER,
                          org=sc.METHOD_ORG, lang=lang, registry=load_commands())
    return chat.turns


def check_replies(turns: list[tuple[str, str]], script: list[tuple[str, str | None]]) -> None:
    for index, ((typed, reply), (_line, expected)) in enumerate(zip(turns, script, strict=True)):
        check_no_failure(reply, (index, typed))
        if expected is not None:
            assert expected in reply, f"turn {index} ({typed!r}): {expected!r} not in:\n{reply}"


def _rows(session: Session) -> dict[str, Any]:
    opp = session.get(Opportunity, OPP_ID)
    assert opp is not None
    needs = session.scalars(select(Need).where(Need.opportunity_id == OPP_ID)).all()
    return {
        "opp": opp,
        "contact": session.get(Contact, QIAN_YU),
        "spin": session.scalars(select(SpinEntry).where(SpinEntry.opportunity_id == OPP_ID)
                                .order_by(SpinEntry.asked_at)).all(),
        "needs": needs,
        "swot": session.scalars(select(SwotEntry).where(SwotEntry.opportunity_id == OPP_ID)).all(),
        "fab": session.scalars(select(FabEntry).where(FabEntry.opportunity_id == OPP_ID)).all(),
        "signals": sorted(session.scalars(select(BuyingSignal.signal).where(
            BuyingSignal.opportunity_id == OPP_ID))),
        "invoices": session.scalars(select(Invoice).where(Invoice.opportunity_id == OPP_ID)
                                    .order_by(Invoice.number)).all(),
        "paid": session.execute(select(func.sum(Payment.amount)).join(
            Invoice, Invoice.id == Payment.invoice_id).where(
            Invoice.opportunity_id == OPP_ID)).scalar(),
        "payments": session.scalar(select(func.count()).select_from(Payment).join(
            Invoice, Invoice.id == Payment.invoice_id).where(Invoice.opportunity_id == OPP_ID)),
        "actions": session.scalars(select(CollectionAction).join(
            Invoice, Invoice.id == CollectionAction.invoice_id).where(
            Invoice.opportunity_id == OPP_ID)).all(),
        "moves": session.scalars(select(Activity.note).where(
            Activity.opportunity_id == OPP_ID, Activity.kind == "stage_change")
            .order_by(Activity.occurred_at)).all(),
        "logged": set(session.scalars(select(Activity.kind).where(
            Activity.opportunity_id == OPP_ID))),
    }


def _check_recorded(rows: dict[str, Any], *, spin_kinds: list[str], goals: int, swot: int,
                    referral: str) -> None:
    opp = rows["opp"]
    assert opp.stage == "won" and opp.closed_at is not None
    assert opp.verdict == "opportunity"
    assert opp.requirements_on == date(2026, 11, 25)
    assert opp.negotiation_on == date(2026, 11, 26)
    assert opp.contract_on == date(2026, 11, 27)
    assert opp.contract_review == {"terms": True, "licence": True, "bank_account": True}
    assert (opp.produced_on, opp.delivered_on, opp.accepted_on) == (
        date(2026, 11, 27), date(2026, 11, 27), date(2026, 11, 27))
    assert opp.close_method == "alternative"
    assert opp.phase == "design"
    assert opp.referral_note == referral
    contact = rows["contact"]
    assert (contact.relationship_stage, contact.comm_style, contact.insider_level) == (
        "trust", "chameleon", "mid")
    # SPIN: each entry on the opportunity, by the rep; the first one asked of Qian Yu
    assert [e.kind for e in rows["spin"]] == spin_kinds
    assert rows["spin"][0].contact_id == QIAN_YU
    assert all(e.user_id == LILEI and e.question and e.answer for e in rows["spin"])
    # the needs tree: goal -> problem -> solution -> product, criterion; a goal whose solution
    # was skipped has no solution row
    by_id = {n.id: n for n in rows["needs"]}
    kinds = sorted(n.kind for n in rows["needs"])
    assert kinds == sorted(["goal", "problem", "solution", "product", "criterion"]
                           + ["goal", "problem"] * (goals - 1))
    for need in rows["needs"]:
        parent = by_id.get(need.parent_id) if need.parent_id else None
        expected = {"goal": None, "problem": "goal", "solution": "problem", "product": "solution",
                    "criterion": "solution"}[need.kind]
        assert (parent.kind if parent else None) == expected, need.kind
    assert len(rows["swot"]) == swot and rows["swot"][0].text
    assert {(s.quadrant, s.source) for s in rows["swot"]} <= {("s", "quality"), ("t", "economic")}
    fab = rows["fab"][0]
    assert fab.product and fab.feature and fab.advantage and fab.benefit
    assert rows["signals"] == ["asks_payment_terms", "asks_price_details", "asks_references"]
    invoices = rows["invoices"]
    assert [(i.number, i.amount, i.status) for i in invoices] == [
        ("YY-2026-0200", Decimal("360000.00"), "paid"),
        ("YY-2027-0001", Decimal("840000.00"), "paid")]
    assert invoices[0].issued_on == date(2026, 11, 27) and invoices[0].due_on == date(2026, 12, 5)
    assert all(i.account_id == demo_id("account", "longjiang-bank") for i in invoices)
    assert Decimal(str(rows["paid"])) == Decimal("1200000.00") and rows["payments"] == 3
    [action] = rows["actions"]
    assert (action.rung, action.done_by, action.next_due) == (
        "phone_gentle", LILEI, date(2026, 12, 1))
    assert action.note
    assert [m.split(" ")[0:3] for m in rows["moves"]] == [
        ["trust", "->", "needs"], ["needs", "->", "value"], ["value", "->", "commitment"],
        ["commitment", "->", "deposit"], ["deposit", "->", "order"],
        ["order", "->", "collection"], ["collection", "->", "won"]]
    assert {"trust", "spin", "needs", "process", "value", "fab", "signals", "close",
            "contract", "invoice", "collect"} <= rows["logged"]


async def test_method_end_to_end_in_english(db: Database) -> None:
    turns = await run_script(db, sc.METHOD_EN)
    check_replies(turns, sc.METHOD_EN)
    rows = await db.run(_rows)
    _check_recorded(rows, spin_kinds=["S", "I", "N"], goals=2, swot=2,
                    referral="Qian Yu referred the Harbin branch of the postal bank")
    # the SPIN feedback counted what was logged
    spin_done = next(reply for typed, reply in turns if typed == "no" and "question mix" in reply)
    assert "S 1 · P 0 · I 1 · N 1" in spin_done


async def test_method_end_to_end_in_chinese(db: Database) -> None:
    turns = await run_script(db, sc.METHOD_ZH, lang="zh")
    check_replies(turns, sc.METHOD_ZH)
    rows = await db.run(_rows)
    _check_recorded(rows, spin_kinds=["S", "P"], goals=2, swot=1,
                    referral="钱宇介绍了邮储银行哈尔滨分行")


# ---- the real entry point, in a subprocess (SQLite) -----------------------------------------


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_salescoach_chat_piped_through_the_method(tmp_path: Path, lang: str) -> None:
    """`salescoach demo --at START`, then the whole script piped into `salescoach chat` with
    the coach's clock started at START (SALESCOACH_NOW), as the in-process runs do."""
    script = sc.METHOD_EN if lang == "en" else sc.METHOD_ZH
    lines = [line for line, _ in script]
    loaded = subprocess.run(salescoach_cmd("demo", "--at", START.isoformat()), cwd=tmp_path,
                            env=salescoach_env(), text=True, capture_output=True, timeout=120)
    assert loaded.returncode == 0, loaded.stderr
    env = {**salescoach_env(), "SALESCOACH_NOW": START.isoformat()}
    done = subprocess.run(
        salescoach_cmd("chat", "--org", "demo", "--user", "lilei", "--lang", lang),
        cwd=tmp_path, env=env, text=True, encoding="utf-8",
        input="".join(f"{x}\n" for x in lines), capture_output=True, timeout=300)
    assert done.returncode == 0, done.stderr
    check_no_failure(done.stdout + done.stderr)
    check_replies(Transcript.parse(done.stdout).turns, script)
    stage = sql(tmp_path / "salescoach.db", "SELECT stage FROM opportunities WHERE id = ?",
                uuid.UUID(str(OPP_ID)).hex)
    assert stage == [("won",)]
