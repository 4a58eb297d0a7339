"""Losing a deal and bringing it back (issue 13, item 5), end to end in the terminal.

`lost <opportunity>` records a reason from the short list, the reason in words, who won and
what to learn; the deal leaves the funnel (no stalled nudge, no open next step), shows on the
account and opportunity cards and in the manager's digest, and counts as dropped in the
analytics. `reopen` brings it back to the stage it was lost in. A won deal is refused before
any question is asked, and nothing is saved.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from bot import nudges
from bot.commands import load_commands
from bot.demo import demo_id, load_demo
from bot.rules import Rules
from store import analytics
from store.db import Database
from store.models import Activity, DialogSession, Opportunity, Org, User
from tests.conversation_checks import START, converse

OPP = "2027 winter down jackets for drilling crews"  # lilei's, presenting value
OPP_ID = demo_id("opportunity", "daqing-winter-2027")
WON = "Kiln crew down jackets 2026"  # zhangwei's; made won below
WON_ID = demo_id("opportunity", "cement-2026")

LANGS = {
    "en": {"lost": "lost", "reopen": "reopen", "account": "account", "opp": "opp",
           "digest": "digest", "customer": "Daqing",
           "reason": "reason: a competitor won (Bosideng was cheaper)",
           "won_by": "won by Bosideng", "lesson": "lesson: Win the safety officer earlier",
           "next": "Next step: finished", "phase": "Buying phase: finished",
           "refused": f"{WON} is won: a won deal cannot be lost. Nothing was changed.",
           "reopen_q": f"{OPP} goes back to presenting value.",
           "not_lost": f"{OPP} is not lost"},
    "zh": {"lost": "丢单", "reopen": "重新打开", "account": "客户", "opp": "商机",
           "digest": "日报", "customer": "大庆油田",
           "reason": "原因：竞争对手胜出（Bosideng was cheaper）",
           "won_by": "被Bosideng拿下", "lesson": "教训：Win the safety officer earlier",
           "next": "下一步：已结束", "phase": "采购阶段：已结束",
           "refused": f"{WON}已经成交：已成交的单不能记为丢单。没有做任何修改。",
           "reopen_q": f"{OPP}将回到“呈现价值”。",
           "not_lost": f"{OPP}并没有丢单"},
}
ANSWERS = ["2", "Bosideng was cheaper", "Bosideng", "Win the safety officer earlier"]


def _opp(session: Session, opp_id: Any = OPP_ID) -> dict[str, Any]:
    opp = session.get(Opportunity, opp_id)
    assert opp is not None
    return {"stage": opp.stage, "lost_reason": opp.lost_reason,
            "lost_details": dict(opp.lost_details or {}), "lost_from": opp.lost_from,
            "next_step": opp.next_step, "next_step_due": opp.next_step_due,
            "closed_at": opp.closed_at}


def _changes(session: Session) -> list[str]:
    return [a.note for a in session.scalars(
        select(Activity).where(Activity.opportunity_id == OPP_ID,
                               Activity.kind == "stage_change").order_by(Activity.occurred_at))]


def _dues(session: Session, days: int) -> list[tuple[str, Any]]:
    org = session.scalars(select(Org).where(Org.external_id == "demo")).one()
    dues = nudges.due_for_org(session, org.id, Rules.for_org(org.settings),
                              START + timedelta(days=days), org.tz)
    return [(d.rule, d.subject_id) for d in dues]


def _mine(dues: list[tuple[str, Any]]) -> list[str]:
    return [rule for rule, subject in dues if subject == OPP_ID]


@pytest.mark.parametrize("lang", ["en", "zh"])
async def test_lost_with_reason_shows_on_the_cards_and_stops_the_nudges(
        db: Database, lang: str) -> None:
    w = LANGS[lang]
    await db.run(load_demo, now=START)
    assert "stalled" in _mine(await db.run(_dues, 30))  # idle a month, it would be chased
    chat = await converse(db, [f"{w['lost']} {OPP}", *ANSWERS, f"{w['account']} {w['customer']}",
                               f"{w['opp']} {OPP}"],
                          user="lilei", org="demo", lang=lang, registry=load_commands())
    assert "[2/5]" in chat.reply(0)  # the name answered "which opportunity?"
    row = await db.run(_opp)
    assert row["stage"] == "lost" and row["lost_from"] == "value"
    assert row["lost_reason"] == "competitor"
    assert row["lost_details"] == {"note": "Bosideng was cheaper", "competitor": "Bosideng",
                                   "lesson": "Win the safety officer earlier"}
    assert row["next_step"] is None and row["next_step_due"] is None  # closed with the deal
    assert row["closed_at"] is not None
    assert (await db.run(_changes))[-1] == "value -> lost"
    account_card, opp_card = chat.reply(-2), chat.reply(-1)
    for card in (account_card, opp_card):
        assert w["reason"] in card and w["won_by"] in card and w["lesson"] in card
    assert w["next"] in opp_card and w["phase"] in opp_card
    assert _mine(await db.run(_dues, 30)) == []  # a lost deal is never nudged


@pytest.mark.parametrize("lang", ["en", "zh"])
async def test_a_lost_deal_counts_in_the_digest_and_the_analytics(db: Database,
                                                                 lang: str) -> None:
    w = LANGS[lang]
    await db.run(load_demo, now=START)
    await converse(db, [f"{w['lost']} {OPP}", *ANSWERS], user="lilei", org="demo", lang=lang,
                   registry=load_commands())
    digest = await converse(db, [w["digest"]], user="wangfang", org="demo", lang=lang,
                            registry=load_commands())
    line = next(ln for ln in digest.reply(0).splitlines() if OPP in ln)
    assert line.startswith(("• lost (1):", "• 丢单 (1)")), line
    assert ("a competitor won" in line) or ("竞争对手胜出" in line)

    def dropped(session: Session) -> int:
        org = session.scalars(select(Org).where(Org.external_id == "demo")).one()
        users = session.scalars(select(User.id).where(User.org_id == org.id)).all()
        report = analytics.team_report(session, org.id, users, start=START - timedelta(days=30),
                                       end=START + timedelta(days=1))
        return report.team.steps["value"].dropped

    assert await db.run(dropped) == 1


@pytest.mark.parametrize("lang", ["en", "zh"])
async def test_reopen_brings_a_lost_deal_back_where_it_was(db: Database, lang: str) -> None:
    w = LANGS[lang]
    await db.run(load_demo, now=START)
    chat = await converse(db, [f"{w['reopen']} {OPP}", f"{w['lost']} {OPP}", *ANSWERS,
                               f"{w['reopen']} {OPP}", "The rival failed the sample test"],
                          user="lilei", org="demo", lang=lang, registry=load_commands())
    assert w["not_lost"] in chat.reply(0)  # an open deal: nothing to reopen, nothing asked
    assert w["reopen_q"] in chat.reply(-2)
    row = await db.run(_opp)
    assert row["stage"] == "value" and row["closed_at"] is None
    assert row["next_step"] == "The rival failed the sample test"
    assert (await db.run(_changes))[-2:] == ["value -> lost", "lost -> value"]
    assert "stalled" in _mine(await db.run(_dues, 30))  # chased again


def _win(session: Session) -> None:
    opp = session.get(Opportunity, WON_ID)
    assert opp is not None
    opp.stage, opp.next_step = "won", None


@pytest.mark.parametrize("lang", ["en", "zh"])
@pytest.mark.parametrize("how", ["named", "picked"])
async def test_a_won_deal_cannot_be_lost(db: Database, lang: str, how: str) -> None:
    w = LANGS[lang]
    await db.run(load_demo, now=START)
    await db.run(_win)
    before = await db.run(_opp, WON_ID)
    lines = [f"{w['lost']} {WON}"] if how == "named" else [w["lost"], WON]
    chat = await converse(db, [*lines, "2"], user="zhangwei", org="demo", lang=lang,
                          registry=load_commands())
    refusal = chat.reply(len(lines) - 1)
    assert w["refused"] in refusal
    assert "[2/5]" not in refusal  # refused before any question about it
    assert await db.run(_opp, WON_ID) == before  # nothing saved

    def open_dialogs(session: Session) -> list[str]:
        return [d.status for d in session.scalars(select(DialogSession).where(
            DialogSession.flow == "lost"))]

    assert await db.run(open_dialogs) == ["cancelled"]  # "2" was no answer to anything
