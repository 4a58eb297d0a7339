"""The managers' digest: content for a manager with a team, when it is due (time zones, DST,
once a day), personal digests, the `digest` command, and failed deliveries shown to managers."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot import digest
from bot.commands import CommandRequest
from bot.commands.digest import handle as digest_command
from bot.outbox import plain
from dialogs.messages import Inbound, TurnContext
from dialogs.render import Renderer
from store.conversations import Speaker
from store.db import Database
from store.models import DigestSubscription, Outbox, SpinEntry, User
from tests.bot import jobs_data as data
from tests.bot.jobs_data import LI, MGR, NOW, ORG, ZHANG

RENDERER = Renderer()
DIGEST_AT = datetime(2026, 11, 30, 0, 30, tzinfo=UTC)  # 08:30 in Shanghai, a Monday


def company(session: Session) -> None:
    data.team(session)
    data.opp(session, "Crew jackets", stage="value", amount="6800000", idle_days=1,
             in_stage_days=0.5)                                   # advanced since yesterday
    data.opp(session, "Bus uniforms", stage="needs", owner=ZHANG, amount="4200000",
             idle_days=26)                                        # stalled (limit 10)
    data.opp(session, "Vests", stage="deposit", owner=ZHANG, amount="380000", idle_days=2)
    data.opp(session, "Office coats", stage="analysis", amount="900000", created_days=0.2)
    data.opp(session, "Old deal", stage="won", amount="500000", closed_days=0.5,
             in_stage_days=0.5)
    data.opp(session, "Gone", stage="lost", owner=ZHANG, amount="100000", closed_days=0.3,
             in_stage_days=0.3)
    data.invoice(session, "INV-10", overdue_days=10, amount="114000")
    data.invoice(session, "INV-20", overdue_days=20, amount="86000")
    data.invoice(session, "INV-95", overdue_days=95, amount="520000",
                 rungs=(("visit", 30),))
    data.contact(session, "Liu", roles=["decision_maker"], stage="acquaint")
    session.add(SpinEntry(org_id=ORG, opportunity_id=data.uid("opp:Crew jackets"),
                          user_id=LI, kind="I", question="What does a cold crew cost you?",
                          asked_at=NOW - timedelta(days=2)))
    session.flush()


async def recipients(db: Database, now: datetime) -> list[digest.Recipient]:
    return await db.run(digest.due_recipients, now)


async def test_manager_digest_content(db: Database) -> None:
    await db.run(company)
    run = await digest.run_pass(db, RENDERER, DIGEST_AT)
    assert [p.target.key for p in run.posts] == ["U_MGR"]
    message = run.posts[0].messages[0]
    assert message.private and message.kind == "digest"
    text = plain(str(message.text))
    for part in (
        "Daily digest for Wang — 2026-11-30",
        "1 · customer analysis: 1 · 900,000 CNY",
        "3 · dig out needs: 1 · 4,200,000 CNY",
        "4 · present value: 1 · 6,800,000 CNY",
        "advanced (1): Crew jackets", "won (1): Old deal", "lost (1): Gone",
        "new (1): Office coats",
        "Bus uniforms — Daqing Oilfield · 3 · dig out needs · 25 d (@Zhang)",
        "1–15 d: 1 · 114,000 CNY", "16–30 d: 1 · 86,000 CNY", "90+ d: 1 · 520,000 CNY",
        "Largest overdue: INV-95 — Daqing Oilfield, 520,000 CNY, 95 d",
        "Zhang: no activity logged this week; no Implication questions logged this week",
        "Li: no activity logged this week; 1 opportunity advanced past step 3 without the "
        "decision maker met",
        "1. Li: legal action for invoice INV-95",
        "2. Zhang: Bus uniforms (Daqing Oilfield) — no activity for 25 days",
        "3. Li: a focused collection call for invoice INV-20",
    ):
        assert part in text, part
    assert "Vests" not in text.split("Stalled opportunities")[1].split("Receivables")[0]
    assert len([line for line in text.splitlines() if line[:2] in ("1.", "2.", "3.")]) == 3
    (chart,) = message.attachments
    assert chart.mime == "image/png" and chart.data.startswith(b"\x89PNG")
    # the reps named "@name" are Slack mentions for the front end (Zhang: stalled deal;
    # Li: the largest overdue invoice and the changes)
    assert {(m.platform, m.user_key, m.name) for m in message.mentions} == \
        {("slack", "U_ZHANG", "Zhang"), ("slack", "U_LI", "Li")}
    for mention in message.mentions:
        assert f"@{mention.name})" in text


async def test_digest_in_chinese(db: Database) -> None:
    def zh(session: Session) -> None:
        company(session)
        manager = session.get(User, MGR)
        assert manager is not None
        manager.lang = "zh"

    await db.run(zh)
    run = await digest.run_pass(db, RENDERER, DIGEST_AT)
    text = plain(str(run.posts[0].messages[0].text))
    assert "Wang 的每日简报" in text and "销售漏斗" in text and "应收账款账龄" in text


async def test_due_at_local_time_once_a_day(db: Database) -> None:
    await db.run(company)
    assert await recipients(db, DIGEST_AT - timedelta(minutes=1)) == []
    assert [r.name for r in await recipients(db, DIGEST_AT)] == ["Wang"]
    assert len((await digest.run_pass(db, RENDERER, DIGEST_AT)).posts) == 1
    assert (await digest.run_pass(db, RENDERER, DIGEST_AT + timedelta(hours=3))).posts == []
    saturday = datetime(2026, 12, 5, 1, 0, tzinfo=UTC)
    assert await recipients(db, saturday) == []
    tuesday = DIGEST_AT + timedelta(days=1)
    assert len((await digest.run_pass(db, RENDERER, tuesday)).posts) == 1


def _subscribe(session: Session, user: uuid.UUID, hour: int, minute: int,
               weekdays: list[int] | None = None, active: bool = True) -> None:
    session.add(DigestSubscription(org_id=ORG, user_id=user, platform="slack", hour=hour,
                                   minute=minute, weekdays=weekdays or [1, 2, 3, 4, 5, 6, 7],
                                   active=active))
    session.flush()


async def _digests_over(db: Database, start: datetime, hours: int) -> list[tuple[str, str]]:
    """(local date, local time) of each digest queued by a pass every 15 minutes."""
    sent: list[tuple[str, str]] = []
    moment = start
    while moment < start + timedelta(hours=hours):
        for post in (await digest.run_pass(db, RENDERER, moment)).posts:
            local = moment.astimezone(ZoneInfo("America/New_York"))
            sent.append((post.dedupe_key.rsplit(":", 1)[1], local.strftime("%H:%M %Z")))
        moment += timedelta(minutes=15)
    return sent


async def test_dst_neither_skips_nor_doubles(db: Database) -> None:
    def build(session: Session) -> None:
        data.team(session, tz="America/New_York")
        data.opp(session, "Crew jackets", stage="value")
        for user in (MGR, LI):
            manager = session.get(User, user)
            assert manager is not None
            manager.tz = "America/New_York"
        _subscribe(session, MGR, 1, 30)   # 01:30 happens twice on 2026-11-01
        _subscribe(session, LI, 2, 30)    # 02:30 does not happen on 2027-03-14

    await db.run(build)
    # from Sunday 00:15 to Monday 23:15 New York time, across the fall-back night
    fall = await _digests_over(db, datetime(2026, 11, 1, 4, 15, tzinfo=UTC), 47)
    assert fall == [("2026-11-01", "01:30 EDT"), ("2026-11-01", "02:30 EST"),
                    ("2026-11-02", "01:30 EST"), ("2026-11-02", "02:30 EST")]
    # and across the spring-forward night: 02:30 does not exist, it comes at 03:00
    spring = await _digests_over(db, datetime(2027, 3, 14, 5, 15, tzinfo=UTC), 46)
    assert spring == [("2027-03-14", "01:30 EST"), ("2027-03-14", "03:00 EDT"),
                      ("2027-03-15", "01:30 EDT"), ("2027-03-15", "02:30 EDT")]


async def test_reps_opt_in_and_managers_opt_out(db: Database) -> None:
    def build(session: Session) -> None:
        company(session)
        _subscribe(session, LI, 9, 0)
        _subscribe(session, MGR, 8, 30, active=False)

    await db.run(build)
    assert await recipients(db, DIGEST_AT) == []
    nine = DIGEST_AT + timedelta(minutes=30)
    run = await digest.run_pass(db, RENDERER, nine)
    assert [p.target.key for p in run.posts] == ["U_LI"]
    text = plain(str(run.posts[0].messages[0].text))
    assert "Your daily digest" in text and "Bus uniforms" not in text  # Zhang's, not Li's
    assert "Coaching highlights" not in text


def _request(session: Session, arg: str, user: uuid.UUID = MGR) -> CommandRequest:
    speaker = Speaker(org_id=ORG, user_id=user, display_name="Wang", lang="en", tz=None,
                      org_lang="en", org_tz="Asia/Shanghai", role="manager")
    inbound = Inbound(platform="slack", org_key="T1", user_key="U_MGR", text=f"/digest {arg}",
                      chat="private", chat_key="D_MGR")
    return CommandRequest(session=session, speaker=speaker, inbound=inbound, arg=arg,
                          ctx=TurnContext(now=NOW, lang="en", user_id=str(user)), now=NOW,
                          renderer=RENDERER)


async def test_digest_command_on_demand_and_subscription(db: Database) -> None:
    await db.run(company)
    (shown,) = await db.run(lambda s: digest_command(_request(s, "")))
    assert "Daily digest for Wang" in str(shown.text) and shown.attachments
    (on,) = await db.run(lambda s: digest_command(_request(s, "on", user=LI)))
    assert "08:30" in str(on.text)

    def sub(session: Session) -> Any:
        return session.execute(select(DigestSubscription.active, DigestSubscription.channel_id)
                               .where(DigestSubscription.user_id == LI)).one()

    assert tuple(await db.run(sub)) == (True, "D_MGR")
    (off,) = await db.run(lambda s: digest_command(_request(s, "off", user=LI)))
    assert "no more" in str(off.text) and (await db.run(sub))[0] is False
    (bad,) = await db.run(lambda s: digest_command(_request(s, "sometimes")))
    assert bad.kind == "error"


async def test_failed_deliveries_are_listed_for_managers(db: Database) -> None:
    def build(session: Session) -> None:
        company(session)
        session.add(Outbox(org_id=ORG, platform="slack", channel_id="C_GONE", kind="nudge",
                           payload={}, dedupe_key="x", status="failed", attempts=3,
                           last_error="DeliveryError: channel_not_found",
                           created_at=DIGEST_AT - timedelta(hours=2)))

    await db.run(build)
    run = await digest.run_pass(db, RENDERER, DIGEST_AT)
    text = plain(str(run.posts[0].messages[0].text))
    assert "Deliveries that failed" in text and "C_GONE: DeliveryError: channel_not_found" in text
