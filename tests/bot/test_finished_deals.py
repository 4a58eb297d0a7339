"""No stale state after a deal ends (issue 13, item 8): once the method script has taken the
bank deal to won (everything invoiced and collected, the referral recorded), its next step and
due date are closed, the cards show the buying phase and the next step as finished, and
`collect` does not ask for the referral again. English and Chinese."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy.orm import Session

from bot.commands import load_commands
from bot.demo import demo_id, load_demo
from store.db import Database
from store.models import Opportunity
from tests import scenarios as sc
from tests.conversation_checks import START, converse

OPP = sc.METHOD_OPPORTUNITY
REFERRAL = {"en": "Qian Yu referred the Harbin branch of the postal bank",
            "zh": "钱宇介绍了邮储银行哈尔滨分行"}
WORDS = {
    "en": {"collect": "collect", "opp": "opp", "asked": "Now is the time to ask",
           "recorded": f"All collected. The referral is recorded: {REFERRAL['en']}",
           "next": "Next step: finished", "phase": "Buying phase: finished"},
    "zh": {"collect": "催收", "opp": "商机", "asked": "现在正是请",
           "recorded": f"款项已全部收回。转介绍已记录：{REFERRAL['zh']}",
           "next": "下一步：已结束", "phase": "采购阶段：已结束"},
}


def _deal(session: Session) -> dict[str, Any]:
    opp = session.get(Opportunity, demo_id("opportunity", "bank-uniforms"))
    assert opp is not None
    return {"stage": opp.stage, "next_step": opp.next_step, "next_step_due": opp.next_step_due,
            "referral": opp.referral_note}


@pytest.mark.parametrize(("lang", "script"), [("en", sc.METHOD_EN), ("zh", sc.METHOD_ZH)])
async def test_a_won_deal_has_nothing_left_open(db: Database, lang: str,
                                                script: list[tuple[str, str | None]]) -> None:
    w = WORDS[lang]
    await db.run(load_demo, now=START)
    lines = [line for line, _ in script]
    referral = max(i for i, line in enumerate(lines) if line.startswith(w["collect"]))
    chat = await converse(db, [*lines, f"{w['collect']} {OPP}", f"{w['opp']} {OPP}"],
                          user=sc.METHOD_USER, org=sc.METHOD_ORG, lang=lang,
                          registry=load_commands())
    assert w["asked"] in chat.reply(referral)  # asked once, when everything came in
    assert await db.run(_deal) == {"stage": "won", "next_step": None, "next_step_due": None,
                                   "referral": REFERRAL[lang]}
    again = chat.reply(-2)
    assert w["asked"] not in again and w["recorded"] in again  # recorded, not asked again
    assert w["next"] in chat.reply(-1) and w["phase"] in chat.reply(-1)
