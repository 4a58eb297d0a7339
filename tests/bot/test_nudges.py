"""Nudges at fixed clocks: each rule, buckets and ladder, working time, snooze/done, grouping,
exactly-once across passes and across concurrent processes (two engines on one database)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bot.commands import CommandRequest
from bot.commands.nudge import handle as nudge_command
from bot.nudges import PassResult, run_pass
from bot.rules import Rules, RulesError
from dialogs.messages import Inbound, Mention, TurnContext
from dialogs.render import Renderer
from store.conversations import Speaker
from store.db import Database
from store.models import Activity, Identity, Nudge, Opportunity, Outbox, TeamChannel
from tests.bot import jobs_data as data
from tests.bot.jobs_data import LI, NOW, ORG, ZHANG

RENDERER = Renderer()


def rules_of(result: PassResult) -> list[tuple[str, str]]:
    return sorted((due.rule, str(due.facts.get("opportunity") or due.facts.get("invoice")))
                  for _id, due in result.raised)


async def setup(db: Database, build: Any = None, **team: Any) -> None:
    def work(session: Session) -> None:
        data.team(session, **team)
        if build is not None:
            build(session)

    await db.run(work)


async def one_pass(db: Database, now: datetime = NOW) -> PassResult:
    return await db.run(run_pass, RENDERER, now)


# ---- rules -------------------------------------------------------------------------------------


def test_ageing_buckets_and_ladder_rungs() -> None:
    rules = Rules.for_org({})
    assert [rules.bucket(d) for d in (1, 15, 16, 30, 31, 60, 61, 90, 91, 400)] == \
        [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    assert [rules.bucket_label(i) for i in range(5)] == \
        ["1–15", "16–30", "31–60", "61–90", "90+"]
    names = [r for r, _d in rules.ladder_days]
    small, large = Decimal("1000"), Decimal("600000")
    assert rules.rung_due(0, small) == -1
    assert names[rules.rung_due(1, small)] == "phone_gentle"
    assert names[rules.rung_due(16, small)] == "phone_focused"
    assert names[rules.rung_due(31, small)] == "dunning_letter"
    assert names[rules.rung_due(46, small)] == "overdue_notice"
    assert names[rules.rung_due(61, small)] == "visit"
    assert names[rules.rung_due(76, small)] == "compromise"
    assert names[rules.rung_due(91, small)] == "deadline"
    assert names[rules.rung_due(121, small)] == "legal"
    # large amounts climb faster, and the threshold is per org
    assert names[rules.rung_due(16, large)] == "dunning_letter"
    assert names[Rules.for_org({"collection_large_amount": "1000000"}).rung_due(16, large)] \
        == "phone_focused"


def test_bad_org_settings_name_the_key() -> None:
    with pytest.raises(RulesError, match="stalled_days: unknown stage 'nope'"):
        Rules.for_org({"stalled_days": {"nope": 3}})
    with pytest.raises(RulesError, match=r"working_hours\.start"):
        Rules.for_org({"working_hours": {"start": "nine"}})
    assert Rules.for_org({"stalled_days": {"deposit": 2}}).stalled_days["deposit"] == 2


# ---- each rule ---------------------------------------------------------------------------------


async def test_stalled_uses_each_stages_limit(db: Database) -> None:
    def build(s: Session) -> None:
        data.opp(s, "deposit idle 4d", stage="deposit", idle_days=4)     # limit 3: stalled
        data.opp(s, "deposit idle 2d", stage="deposit", idle_days=2)
        data.opp(s, "analysis idle 10d", stage="analysis", idle_days=10)  # limit 14
        data.opp(s, "analysis idle 15d", stage="analysis", idle_days=15)
        data.opp(s, "won long ago", stage="won", idle_days=90)            # closed: never
        data.opp(s, "never touched", stage="value", idle_days=None, in_stage_days=8)

    await setup(db, build)
    result = await one_pass(db)
    assert rules_of(result) == [("stalled", "analysis idle 15d"), ("stalled", "deposit idle 4d"),
                                ("stalled", "never touched")]
    text = str(result.posts[0].messages[0].text)
    assert "@Li" in text and "Suggested" in text


async def test_next_step_past_due_and_overstay(db: Database) -> None:
    def build(s: Session) -> None:
        data.opp(s, "late step", stage="trust", next_step_due=date(2026, 11, 27))
        data.opp(s, "step today", stage="trust", next_step_due=date(2026, 11, 30))
        for i in range(5):
            data.opp(s, f"usual {i}", stage="value", in_stage_days=5)
        data.opp(s, "stuck in value", stage="value", in_stage_days=40)

    await setup(db, build)
    result = await one_pass(db)
    assert rules_of(result) == [("next_step", "late step"), ("overstay", "stuck in value")]
    periods = {due.rule: due.period for _id, due in result.raised}
    assert periods["next_step"] == "2026-11-27"
    assert periods["overstay"] == "2026-10-21"
    by_rule = {due.rule: due.facts for _id, due in result.raised}
    assert by_rule["overstay"]["usual_days"] == 11  # (5*5 + 40) / 6 days


async def test_overdue_invoice_names_everything_and_the_next_rung(db: Database) -> None:
    def build(s: Session) -> None:
        data.invoice(s, "INV-1", overdue_days=20, rungs=(("phone_gentle", 12),))
        data.invoice(s, "INV-2", overdue_days=20, amount="900000")       # large: climbs faster
        data.invoice(s, "INV-3", overdue_days=5, rungs=(("phone_gentle", 1),))  # rung taken
        data.invoice(s, "INV-4", overdue_days=40, status="paid")
        data.invoice(s, "INV-5", overdue_days=0)                          # due today

    await setup(db, build)
    result = await one_pass(db)
    raised = {due.facts["invoice"]: due for _id, due in result.raised}
    assert sorted(raised) == ["INV-1", "INV-2"]
    assert raised["INV-1"].period == "phone_focused"
    assert raised["INV-2"].period == "dunning_letter"
    assert raised["INV-1"].facts["bucket"] == "16–30"
    posts = {p.messages[0].text.split("</code>")[0].rsplit(">", 1)[-1]: p for p in result.posts}
    post = posts["INV-1"]
    text = str(post.messages[0].text)
    for part in ("INV-1", "Daqing Oilfield", "80,000 CNY", "20 days overdue",
                 "a gentle reminder call", "a focused collection call", "@Li"):
        assert part in text, part
    assert post.messages[0].mentions == (Mention("slack", "U_LI", "Li"),)
    assert [o.value.split()[1] for o in post.messages[0].options] == \
        ["done", "snooze3", "snooze7", "open"]


async def test_collection_action_moves_the_ladder(db: Database) -> None:
    await setup(db, lambda s: data.invoice(s, "INV-9", overdue_days=35))
    first = await one_pass(db)
    assert [d.period for _i, d in first.raised] == ["dunning_letter"]

    def act(s: Session) -> None:
        s.add(data.CollectionAction(org_id=ORG, invoice_id=data.uid("inv:INV-9"),
                                    rung="dunning_letter", done_by=LI, done_at=NOW))

    await db.run(act)
    assert (await one_pass(db, NOW + timedelta(days=3))).raised == []
    later = await one_pass(db, NOW + timedelta(days=14))  # 49 days: the overdue notice
    assert [d.period for _i, d in later.raised] == ["overdue_notice"]


# ---- working time --------------------------------------------------------------------------


async def test_only_in_working_hours_days_and_not_on_holidays(db: Database) -> None:
    await setup(db, lambda s: data.opp(s, "idle", stage="deposit", idle_days=10),
                settings={"holidays": ["2026-12-01"]})
    early = datetime(2026, 11, 30, 0, 59, tzinfo=UTC)      # 08:59 Shanghai
    assert (await one_pass(db, early)).skipped_orgs == ["Acme"]
    evening = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)    # 18:00 Shanghai
    assert (await one_pass(db, evening)).skipped_orgs == ["Acme"]
    holiday = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)
    assert (await one_pass(db, holiday)).skipped_orgs == ["Acme"]
    saturday = datetime(2026, 12, 5, 3, 0, tzinfo=UTC)
    assert (await one_pass(db, saturday)).skipped_orgs == ["Acme"]
    sunday_night_utc = datetime(2026, 12, 6, 17, 0, tzinfo=UTC)  # Monday 01:00 Shanghai
    assert (await one_pass(db, sunday_night_utc)).skipped_orgs == ["Acme"]
    monday = datetime(2026, 11, 30, 1, 0, tzinfo=UTC)      # 09:00 Shanghai
    result = await one_pass(db, monday)
    assert result.skipped_orgs == [] and len(result.raised) == 1


async def test_time_zone_of_the_org_decides(db: Database) -> None:
    await setup(db, lambda s: data.opp(s, "idle", stage="deposit", idle_days=10),
                tz="America/New_York")
    # 10:00 in Shanghai is 21:00 the evening before in New York
    assert (await one_pass(db, NOW)).skipped_orgs == ["Acme"]
    assert len((await one_pass(db, NOW + timedelta(hours=13))).raised) == 1


# ---- snooze, done, exactly once ------------------------------------------------------------


def _request(session: Session, arg: str, user: uuid.UUID = LI,
             now: datetime = NOW, role: str = "rep") -> CommandRequest:
    speaker = Speaker(org_id=ORG, user_id=user, display_name="Li", lang="en", tz=None,
                      org_lang="en", org_tz="Asia/Shanghai", role=role)
    inbound = Inbound(platform="slack", org_key="T1", user_key="U_LI", text=f"/nudge {arg}",
                      chat="channel", chat_key="C_TEAM")
    ctx = TurnContext(now=now, lang="en", user_id=str(user))
    return CommandRequest(session=session, speaker=speaker, inbound=inbound, arg=arg, ctx=ctx,
                          now=now, renderer=RENDERER)


async def test_snoozed_subjects_stay_quiet_until_the_snooze_ends(db: Database) -> None:
    await setup(db, lambda s: data.opp(s, "idle", stage="deposit", idle_days=4))
    first = await one_pass(db)
    nudge_id = first.raised[0][0]
    reply = await db.run(lambda s: nudge_command(_request(s, f"snooze7 {nudge_id}")))
    assert "Snoozed until 2026-12-07 10:00" in str(reply[0].text)
    # a week later the stall is in a new period, but still snoozed one hour before the end
    assert (await one_pass(db, NOW + timedelta(days=6, hours=23))).raised == []
    again = await one_pass(db, NOW + timedelta(days=7, hours=1))
    assert [d.rule for _i, d in again.raised] == ["stalled"]


async def test_done_logs_an_activity_and_resolves_the_stall(db: Database) -> None:
    await setup(db, lambda s: data.opp(s, "idle", stage="deposit", idle_days=4))
    nudge_id = (await one_pass(db)).raised[0][0]
    reply = await db.run(lambda s: nudge_command(_request(s, f"done {nudge_id}")))
    assert "Marked done by Li" in str(reply[0].text)

    def check(s: Session) -> tuple[Any, ...]:
        return (s.scalar(select(Nudge.status).where(Nudge.id == nudge_id)),
                s.scalar(select(func.count()).select_from(Activity)),
                s.scalar(select(Opportunity.last_activity_at)))

    status, activities, last = await db.run(check)
    assert (status, activities, last) == ("done", 1, NOW)
    assert (await one_pass(db, NOW + timedelta(days=2))).raised == []
    again = await db.run(lambda s: nudge_command(_request(s, f"done {nudge_id}")))
    assert "already" in str(again[0].text)


async def test_only_the_owner_their_manager_or_an_admin_acts_on_a_nudge(db: Database) -> None:
    await setup(db, lambda s: data.opp(s, "idle", stage="deposit", idle_days=4))
    nudge_id = (await one_pass(db)).raised[0][0]

    def state(s: Session) -> tuple[Any, ...]:
        return (s.scalar(select(Nudge.status).where(Nudge.id == nudge_id)),
                s.scalar(select(func.count()).select_from(Activity)),
                s.scalar(select(Opportunity.last_activity_at)))

    before = await db.run(state)
    for action in ("done", "snooze7", "open", "letter"):  # Zhang: another rep of the team
        said = await db.run(lambda s, a=action: nudge_command(
            _request(s, f"{a} {nudge_id}", user=ZHANG)))
        assert "Only the rep whose deal this is, their manager or an admin" in str(said[0].text)
        assert said[0].private
    assert await db.run(state) == before  # nothing marked, nothing logged, not reset
    said = await db.run(lambda s: nudge_command(
        _request(s, f"done {nudge_id}", user=data.MGR, role="manager")))
    assert "Marked done" in str(said[0].text)
    assert (await db.run(state))[0] == "done"


async def test_nudge_command_open_letter_and_bad_input(db: Database) -> None:
    def build(s: Session) -> None:
        data.opp(s, "idle", stage="needs", idle_days=30)
        data.invoice(s, "INV-7", overdue_days=33)

    await setup(db, build)
    result = await one_pass(db)
    ids = {due.subject_type: nid for nid, due in result.raised}
    opened = await db.run(lambda s: nudge_command(_request(s, f"open {ids['opportunity']}")))
    assert opened[0].private and opened[0].options[0].value == "/spin"
    letter = await db.run(lambda s: nudge_command(_request(s, f"letter {ids['invoice']}")))
    text = str(letter[0].text)
    assert "Payment reminder" in text and "INV-7" in text and "33 days overdue" in text
    assert letter[0].private
    bad = await db.run(lambda s: nudge_command(_request(s, "done not-an-id")))
    assert bad[0].kind == "error" and "not-an-id" in str(bad[0].text)
    usage = await db.run(lambda s: nudge_command(_request(s, "explode")))
    assert "Use:" in str(usage[0].text)
    unknown = await db.run(lambda s: nudge_command(_request(s, f"done {uuid.uuid4()}")))
    assert unknown[0].kind == "error"


async def test_letters_exist_in_chinese(db: Database) -> None:
    await setup(db, lambda s: data.invoice(s, "INV-8", overdue_days=50))
    nid = (await one_pass(db)).raised[0][0]

    def zh(s: Session) -> Any:
        req = _request(s, f"letter {nid}")
        req = CommandRequest(**{**req.__dict__, "ctx": TurnContext(now=NOW, lang="zh",
                                                                     user_id=str(LI))})
        return nudge_command(req)

    text = str((await db.run(zh))[0].text)
    assert "逾期付款通知书" in text and "INV-8" in text


async def test_grouped_message_with_details_in_its_thread(db: Database) -> None:
    def build(s: Session) -> None:
        for i in range(5):
            data.opp(s, f"idle {i}", stage="deposit", idle_days=4 + i,
                     owner=LI if i % 2 else ZHANG)

    await setup(db, build)
    result = await one_pass(db)
    group, *details = result.posts
    assert group.kind == "nudge_group" and "5 nudges" in str(group.messages[0].text)
    assert len(details) == 5 and {p.thread_of for p in details} == {group.dedupe_key}
    assert set(group.messages[0].mentions) == {Mention("slack", "U_LI", "Li"),
                                               Mention("slack", "U_ZHANG", "Zhang")}
    for detail in details:  # each detail pings its own owner, named in its text
        [owner] = detail.messages[0].mentions
        assert f"@{owner.name} " in str(detail.messages[0].text)
    rows = await db.run(lambda s: s.scalar(select(func.count()).select_from(Outbox)))
    assert rows == 6


async def test_each_platforms_post_mentions_the_owner_on_that_platform(db: Database) -> None:
    def build(s: Session) -> None:
        # a Telegram group too; Li has a Telegram account, Zhang does not
        s.add_all([TeamChannel(org_id=ORG, platform="telegram", channel_id="-100777",
                               name="sales", bound_at=NOW - timedelta(days=1)),
                   Identity(org_id=ORG, user_id=LI, platform="telegram", external_id="8001")])
        data.opp(s, "deal of Li", stage="deposit", idle_days=5)
        data.opp(s, "deal of Zhang", stage="deposit", idle_days=6, owner=ZHANG)

    await setup(db, build)
    result = await one_pass(db)
    mentions = {(p.platform, str(p.messages[0].text).split(" — ")[0].split(" · ")[-1]):
                p.messages[0].mentions for p in result.posts}
    assert mentions == {
        ("slack", "deal of Li"): (Mention("slack", "U_LI", "Li"),),
        ("slack", "deal of Zhang"): (Mention("slack", "U_ZHANG", "Zhang"),),
        ("telegram", "deal of Li"): (Mention("telegram", "8001", "Li"),),
        ("telegram", "deal of Zhang"): (),  # named, not pinged
    }


async def test_a_flood_is_one_message_with_the_most_urgent(db: Database) -> None:
    def build(s: Session) -> None:
        for i in range(40):
            data.opp(s, f"idle {i:02d}", stage="deposit", idle_days=4 + i)

    await setup(db, build, settings={"group_limit": 5})
    result = await one_pass(db)
    assert len(result.raised) == 40
    group, *details = result.posts
    text = str(group.messages[0].text)
    assert "40 nudges" in text and "…and 35 more" in text
    assert "idle 39" in str(details[0].messages[0].text)  # the longest idle first
    assert len(details) == 5
    assert (await one_pass(db)).raised == []  # the rest were raised too: never repeated


async def test_few_nudges_are_posted_one_by_one(db: Database) -> None:
    def build(s: Session) -> None:
        data.opp(s, "a", stage="deposit", idle_days=4)
        data.opp(s, "b", stage="deposit", idle_days=5, next_step_due=date(2026, 11, 20))

    await setup(db, build)
    result = await one_pass(db)
    assert [p.kind for p in result.posts] == ["nudge", "nudge"]
    # one subject, two rules: one message naming both
    text = next(str(p.messages[0].text) for p in result.posts if "b —" in str(
        p.messages[0].text))
    assert "no activity for 5 days" in text and "next step was due 2026-11-20" in text


async def test_exactly_once_across_passes(db: Database) -> None:
    await setup(db, lambda s: (data.opp(s, "idle", stage="deposit", idle_days=4),
                               data.invoice(s, "INV-1", overdue_days=3)))
    assert len((await one_pass(db)).raised) == 2
    assert (await one_pass(db)).raised == []
    assert (await one_pass(db, NOW + timedelta(hours=5))).raised == []
    counts = await db.run(lambda s: (s.scalar(select(func.count()).select_from(Nudge)),
                                     s.scalar(select(func.count()).select_from(Outbox))))
    assert counts == (2, 2)


async def test_exactly_once_with_two_processes_at_once(db: Database,
                                                       database_url: str) -> None:
    def build(s: Session) -> None:
        for i in range(30):
            data.opp(s, f"idle {i}", stage="deposit", idle_days=4)
            data.invoice(s, f"INV-{i}", overdue_days=3 + i)

    await setup(db, build)
    other = Database(database_url)  # a second engine: its own connections and transactions
    try:
        results = await asyncio.gather(*(one_pass(d) for d in (db, other, db, other)),
                                       return_exceptions=True)
    finally:
        await other.dispose()
    # a pass that lost a race on the unique constraint may fail and roll back whole; the
    # nudges it would have raised are then raised by the winner, never twice
    raised = sum(len(r.raised) for r in results if isinstance(r, PassResult))
    assert raised == 60
    counts = await db.run(lambda s: (s.scalar(select(func.count()).select_from(Nudge)),
                                     s.scalar(select(func.count()).select_from(Outbox))))
    assert counts == (60, 16)  # one grouped message + the 15 most urgent in its thread


async def test_buttons_work_through_the_coach(db: Database) -> None:
    """The value of a nudge's button, sent as the rep's click in the channel, goes through
    the coach like any command; `nudge` is hidden from the help."""
    from bot.app import build_engine
    from bot.coach import Coach
    from bot.commands import load_commands

    await setup(db, lambda s: data.opp(s, "idle", stage="deposit", idle_days=4))
    result = await one_pass(db)
    (snooze,) = [o.value for o in result.posts[0].messages[0].options if "snooze3" in o.value]
    renderer, engine = build_engine()
    coach = Coach(db, engine, renderer, clock=lambda: NOW, registry=load_commands())
    assert "nudge" not in coach.help_names and "digest" in coach.help_names
    reply = await coach.handle(Inbound(platform="slack", org_key="T1", user_key="U_LI",
                                       text=snooze, user_name="Li", chat="channel",
                                       chat_key="C_TEAM"))
    assert "Snoozed until 2026-12-03" in str(reply.messages[0].text)

    def status(s: Session) -> tuple[str, datetime | None]:
        row = s.execute(select(Nudge.status, Nudge.snoozed_until)).one()
        return row[0], row[1]

    assert await db.run(status) == ("snoozed", NOW + timedelta(days=3))


async def test_nothing_is_raised_without_a_team_channel(db: Database) -> None:
    def build(s: Session) -> None:
        data.opp(s, "idle", stage="deposit", idle_days=4)
        s.query(data.TeamChannel).delete()

    await setup(db, build)
    result = await one_pass(db)
    assert result.raised == [] and result.no_channel == ["Acme"]
