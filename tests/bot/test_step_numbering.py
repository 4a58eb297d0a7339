"""One numbering of the funnel (issue 13, item 8): "press for the deposit" and "order" are in
step 6 of the method (after the contract that ends step 5) — in `advance`, the cards, the
analytics, the nudges, the digest and its chart alike. The numbers come from one place,
`store.funnel.STEP_OF`; no catalog label carries its own."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import timedelta

import pytest
from sqlalchemy.orm import Session

from bot import digest, nudges
from bot.app import build_engine
from bot.commands import load_commands
from bot.demo import demo_id, load_demo
from bot.outbox import plain
from store.db import Database
from store.funnel import STEP_OF
from store.models import Opportunity
from tests.conversation_checks import START, converse

RENDERER, _ENGINE = build_engine()
VESTS = "Station staff down vests (pilot lot)"  # zhangwei's, pressing for the deposit
VESTS_ID = demo_id("opportunity", "bus-vests")
MONDAY = START + timedelta(days=3, hours=1)  # 10:00 in Shanghai, a working hour
LABELS = {  # what each stage is called on the cards, in nudges and the digest, on the chart
    ("en", "deposit"): ("Press for the deposit", "press for the deposit", "Deposit"),
    ("en", "order"): ("Order", "order", "Order"),
    ("zh", "deposit"): ("催打定金", "催打定金", "催打定金"),
    ("zh", "order"): ("订单", "订单", "订单"),
}
WORDS = {"en": {"opp": "opp", "advance": "advance", "analytics": "analytics",
                "stays": "stays in step 6"},
         "zh": {"opp": "商机", "advance": "推进", "analytics": "分析", "stays": "第 6 步"}}


def test_no_catalog_numbers_a_stage_itself() -> None:
    for lang, catalog in RENDERER.catalogs.items():
        for key, text in catalog.items():
            if re.fullmatch(r"(lk|jobs|slack)\.(stage|short)\.[a-z_]+", key):
                assert not re.match(r"\s*\d", text), (lang, key, text)
    assert STEP_OF["deposit"] == STEP_OF["order"] == STEP_OF["collection"] == 6
    assert STEP_OF["commitment"] == 5


@pytest.mark.parametrize("lang", ["en", "zh"])
@pytest.mark.parametrize("stage", ["deposit", "order"])
async def test_deposit_and_order_are_step_6_everywhere(db: Database, lang: str,
                                                      stage: str) -> None:
    card_label, job_label, chart_label = LABELS[(lang, stage)]
    w = WORDS[lang]
    await db.run(load_demo, now=START)

    def put(session: Session) -> None:
        opp = session.get(Opportunity, VESTS_ID)
        assert opp is not None
        opp.stage = stage  # and idle a month there: stalled, in the analytics and nudges
        opp.last_activity_at = START - timedelta(days=30)

    await db.run(put)
    chat = await converse(db, [f"{w['opp']} {VESTS}", f"{w['advance']} {VESTS}",
                               f"{w['analytics']} 90"],
                          user="zhangwei", org="demo", lang=lang, registry=load_commands())
    assert f"6 · {card_label}" in chat.reply(0)  # the card
    assert w["stays"] in chat.reply(1)  # advance
    assert f"• 6 · {card_label}" in chat.reply(2)  # the analytics (stalled there)

    def nudge_texts(session: Session) -> str:
        org_id = session.get(Opportunity, VESTS_ID).org_id  # type: ignore[union-attr]
        run = nudges.run_pass(session, RENDERER, MONDAY, [org_id], queue=False)
        return "\n".join(plain(m.text) for p in run.posts for m in p.messages)

    def digest_of_wang(session: Session) -> tuple[str, list[str]]:
        wang = demo_id("user", "wangfang")
        [recipient] = digest.due_recipients(session, MONDAY, force=True, only_user=wang)
        data = digest.gather(session, replace(recipient, lang=lang), MONDAY)
        return (plain(digest.render_text(RENDERER, data)),
                [bar.label for bar in digest.funnel_bars(RENDERER, data)])

    # nudges speak the team channel's language (English in the demo), a digest its reader's
    nudged = await db.run(nudge_texts)
    assert f"6 · {LABELS[('en', stage)][1]}" in nudged
    text, bars = await db.run(digest_of_wang)
    assert f"6 · {job_label}" in text
    assert f"6 · {chart_label}" in bars
