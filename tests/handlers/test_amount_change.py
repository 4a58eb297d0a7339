"""A changed contract amount is recorded as such, with who and why (issue 13, item 4).

The contract flow asks for the contract amount, showing what is recorded (the budget from
`qualify`); skipping or typing the same amount changes nothing. A different amount is saved,
the coach asks why, and the change is logged as an activity by the rep: from, to and the reason.
Console, on the demo company, en and zh.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.commands import load_commands
from bot.demo import demo_id, load_demo
from store.db import Database
from store.models import Activity, Opportunity
from tests import scenarios as sc
from tests.conversation_checks import START, check_no_failure, converse

OPP = sc.METHOD_OPPORTUNITY
OPP_ID = demo_id("opportunity", "bank-uniforms")
CASES = {
    "en": {"cmd": "contract", "yes": "yes", "new": "¥1,100,000", "same": "1.2m",
           "shown": "recorded so far: 1,200,000 CNY; skip keeps it",
           "why": "That is not the amount recorded before. Why did it change?",
           "reason": "Three-year frame contract, 8% discount"},
    "zh": {"cmd": "合同", "yes": "是", "new": "110万", "same": "120万",
           "shown": "目前记录为 1,200,000 CNY，跳过则保持不变",
           "why": "这与之前记录的金额不同。为什么变了？", "reason": "三年框架合同，优惠8%"},
}


async def _chat(db: Database, lines: list[str], lang: str) -> list[str]:
    chat = await converse(db, lines, user=sc.METHOD_USER, org=sc.METHOD_ORG, lang=lang,
                          registry=load_commands())
    for typed, reply in chat.turns:
        check_no_failure(reply, typed)
    return [reply for _typed, reply in chat.turns]


def _stored(session: Session) -> tuple[Decimal | None, list[tuple[str, str | None, object]]]:
    opp = session.get(Opportunity, OPP_ID)
    assert opp is not None
    changes = session.execute(select(Activity.kind, Activity.note, Activity.user_id).where(
        Activity.opportunity_id == OPP_ID, Activity.kind == "change")).all()
    return opp.amount, [tuple(c) for c in changes]


@pytest.mark.parametrize("lang", ["en", "zh"])
async def test_a_changed_contract_amount_is_logged_with_who_and_why(db: Database,
                                                                    lang: str) -> None:
    c = CASES[lang]
    await db.run(load_demo, now=START)
    head = [f"{c['cmd']} {OPP}", "1", c["yes"], c["yes"], c["yes"], "2026-11-27"]
    # the same amount typed again: no question, nothing logged
    replies = await _chat(db, [*head, c["same"]], lang)
    assert c["shown"] in replies[5] and c["why"] not in replies[6]
    assert await db.run(_stored) == (Decimal("1200000.00"), [])
    # a different amount: saved, the reason asked and logged with the rep's name
    replies = await _chat(db, [*head, c["new"], c["reason"]], lang)
    assert c["why"] in replies[6]
    amount, changes = await db.run(_stored)
    assert amount == Decimal("1100000.00")
    assert changes == [("change", "Contract amount: 1,200,000 CNY -> 1,100,000 CNY "
                                  f"({c['reason']})", demo_id("user", "lilei"))]


async def test_back_and_answer_again_logs_one_change_from_the_first_value(db: Database) -> None:
    await db.run(load_demo, now=START)
    await _chat(db, [f"contract {OPP}", "1", "yes", "yes", "yes", "2026-11-27",
                     "¥1,100,000", "back", "¥1,000,000", "Lower spec fill"], "en")
    amount, changes = await db.run(_stored)
    assert amount == Decimal("1000000.00")
    assert [note for _k, note, _u in changes] == [
        "Contract amount: 1,200,000 CNY -> 1,000,000 CNY (Lower spec fill)"]
    # and back to the recorded amount: no change to log
    await _chat(db, [f"contract {OPP}", "1", "yes", "yes", "yes", "2026-11-27", "¥1,000,000"],
                "en")
    assert len((await db.run(_stored))[1]) == 1
