"""No facts from the future, no plans in the past unconfirmed, dates in order (issue 13, item 3).

The rules live in the flow files (`not_after: now`, `not_before: [delivered_on,
opportunity.delivered_on]`); the re-ask says why and shows the date as understood, and every
accepted date and amount is echoed. Driven through the console on the demo company at START.
"""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy.orm import Session

from bot.commands import load_commands
from bot.demo import demo_id, load_demo
from dialogs.flow import date_bounds, load_flows
from store.db import Database
from store.models import Opportunity
from store.records import json_keys, table_columns
from tests import scenarios as sc
from tests.conversation_checks import START, converse

OPP = sc.METHOD_OPPORTUNITY
OPP_ID = demo_id("opportunity", "bank-uniforms")


async def _chat(db: Database, lines: list[str], lang: str | None = None) -> list[str]:
    await db.run(load_demo, now=START)
    chat = await converse(db, lines, user=sc.METHOD_USER, org=sc.METHOD_ORG, lang=lang,
                          registry=load_commands())
    return [reply for _typed, reply in chat.turns]


def _opp(session: Session) -> Opportunity:
    opp = session.get(Opportunity, OPP_ID)
    assert opp is not None
    return opp


@pytest.mark.parametrize(("lang", "typed", "said"), [
    ("en", "in two weeks", "cannot be after today — I read that as 2026-12-11 (Fri, in 14 days)"),
    ("zh", "两周后", "不能晚于今天——我理解的日期是 2026-12-11（周五，14 天后）"),
])
async def test_a_contract_signed_in_the_future_is_refused(db: Database, lang: str, typed: str,
                                                          said: str) -> None:
    replies = await _chat(db, [f"contract {OPP}", "1", "yes", "yes", "yes", typed,
                               "2026-11-26", "skip"], lang=lang)
    assert said in replies[5]
    opp = await db.run(_opp)
    assert opp.contract_on == date(2026, 11, 26)  # the date it happened, after the re-ask
    echo = "✓ Contract signed: 2026-11-26 (Thu, yesterday)" if lang == "en" else \
        "✓ 合同签订日期：2026-11-26（周四，昨天）"
    assert echo in replies[6]


async def test_delivery_before_production_and_invoice_before_contract(db: Database) -> None:
    replies = await _chat(db, [
        f"contract {OPP}", "1", "yes", "yes", "yes", "2026-11-20", "skip",
        f"contract {OPP}", "2", "2026-11-24", "2026-11-22", "2026-11-25", "2026-11-21",
        "2026-11-26",
        f"invoice {OPP}", "1", "YY-9", "¥10,000", "2026-11-18", "2026-11-21", "2026-12-21"])
    assert "2026-11-22 (Sun, 5 days ago) is earlier than “Production done”: 2026-11-24" \
        in replies[10]
    assert "is earlier than “Delivered”: 2026-11-25" in replies[12]
    # the contract was signed on 11-20 in an earlier dialog: a fact of the opportunity
    assert "is earlier than “contract signed”: 2026-11-20" in replies[18]
    assert "✓ Amount: 10,000 CNY" in replies[17] or "10,000 CNY" in replies[17]
    opp = await db.run(_opp)
    assert (opp.produced_on, opp.delivered_on, opp.accepted_on) == (
        date(2026, 11, 24), date(2026, 11, 25), date(2026, 11, 26))


@pytest.mark.parametrize("lang", ["en", "zh"])
async def test_a_plan_in_the_past_needs_a_confirmation(db: Database, lang: str) -> None:
    replies = await _chat(db, [f"process {OPP}", "1", "Send the sample", "2026-11-20",
                               "2026-11-20"], lang=lang)
    warned = "is in the past, and “Due” is a plan. Type 2026-11-20 again to keep it" \
        if lang == "en" else "已经过去了，而“计划日期”是计划。如确定，请再输入一次 2026-11-20"
    assert warned in replies[3]
    assert warned not in replies[4]
    opp = await db.run(_opp)
    assert opp.next_step_due == date(2026, 11, 20)  # confirmed by typing it again


def test_every_fact_date_is_not_after_now() -> None:
    """The date rules are data: every date step that records something that happened says
    `not_after: now`, every plan `not_before: now`."""
    flows = load_flows(columns=table_columns(), json_keys=json_keys())
    facts = {"signed_on", "produced_on", "delivered_on", "accepted_on", "issued", "paid_on",
             "written_on", "negotiation_on"}
    plans = {"next_due", "due", "timetable"}
    seen = set()
    for flow in flows.flows.values():
        for step in flow.all_steps():
            if step.type != "date":
                continue
            seen.add(step.id)
            if step.id in facts:
                assert "now" in date_bounds(step.not_after), (flow.id, step.id)
            else:
                assert step.id in plans, (flow.id, step.id)
                assert "now" in date_bounds(step.not_before), (flow.id, step.id)
    assert facts <= seen
