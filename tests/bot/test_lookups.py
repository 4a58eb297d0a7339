"""The look-up commands through the coach: cards, pick lists, permissions, personal notes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.app import build_engine
from bot.coach import Coach, Reply, plain
from bot.commands import load_commands
from bot.demo import load_demo
from dialogs.messages import Inbound
from store.db import Database
from store.models import AuditLog, SpinEntry
from tests.store.lookups_data import NOW, build, uid


def make_coach(db: Database, now: datetime = NOW) -> Coach:
    renderer, engine = build_engine()
    return Coach(db, engine, renderer, clock=lambda: now, registry=load_commands())


async def ask(coach: Coach, user: str, text: str, *, chat: str = "private",
              org: str = "acme", shared: bool = False) -> Reply:
    return await coach.handle(Inbound(platform="console", org_key=org, user_key=user, text=text,
                                      chat=chat, chat_key="C1" if chat == "channel" else None,
                                      shared=shared))


def text_of(reply: Reply) -> str:
    return "\n".join(plain(m.text) for m in reply.messages)


@pytest.fixture
async def coach(db: Database) -> Coach:
    await db.run(build)
    return make_coach(db)


async def test_account_card_by_chinese_name_and_typo(coach: Coach) -> None:
    for query in ("中石化", "sinopek beijing", "Sinopec"):
        reply = await ask(coach, "rep1", f"account {query}")
        card = text_of(reply)
        assert card.startswith("中石化北京石油分公司 (Sinopec Beijing)"), query
    assert "Owner: Rep1" in card
    assert "Funnel step: 3 · Dig out needs" in card
    assert "Winter jackets 2027" in card and "1,200,000 CNY" in card
    assert "Health:" in card
    # key contacts by buying role, with relationship stage and style
    assert card.index("Decision maker: 王海 (Wang Hai)") < card.index("Evaluator: 李娜 (Li Na)")
    assert "王海 (Wang Hai) · trust · owl · mid-level insider" in card
    assert "AC-001: 300,000 CNY — 20 days overdue" in card
    assert "Insider reached: mid-level insider" in card


async def test_personal_notes_in_private_only_for_owner_and_managers(
        coach: Coach, db: Database) -> None:
    notes = "Collects tea; his son studies in Leeds."
    for who in ("rep1", "manager", "director"):
        reply = await ask(coach, who, "account sinopec")
        assert notes in text_of(reply), who
        assert all(m.private for m in reply.messages), who
    # an admin sees the account, not the personal notes
    reply = await ask(coach, "admin", "account sinopec")
    assert "Sinopec Beijing" in text_of(reply) and notes not in text_of(reply)
    assert not any(m.private for m in reply.messages)

    def audited(session: Session) -> list[tuple[str, str | None]]:
        rows = session.execute(select(AuditLog.action, AuditLog.user_id, AuditLog.subject_id))
        return [(a, str(u)) for a, u, s in rows if s == uid("contact", "wanghai")]

    log = await db.run(audited)
    assert ("view_personal", str(uid("user", "rep1"))) in log
    assert ("view_personal", str(uid("user", "manager"))) in log
    assert ("view_personal", str(uid("user", "admin"))) not in log


@pytest.mark.parametrize("command", ["account sinopec", "who sinopec", "opp winter jackets"])
@pytest.mark.parametrize("who", ["rep1", "manager", "admin"])
async def test_a_channel_never_receives_personal_notes(coach: Coach, command: str,
                                                       who: str) -> None:
    # typed in a channel: the answer is the asker's alone (ephemeral, or their private chat)
    reply = await ask(coach, who, command, chat="channel")
    assert reply.messages and all(m.private for m in reply.messages)
    assert "Collects tea" not in text_of(reply)  # and a channel is no private chat
    # shared there: for everyone, so without personal notes, nor a hint that there are any,
    # nor our read of the people (relationship, style, insider)
    reply = await ask(coach, who, command, chat="channel", shared=True)
    text = text_of(reply)
    assert "Wang Hai" in text  # the card itself is there
    assert "Collects tea" not in text and "only in a private chat" not in text
    assert "(Wang Hai) · " not in text  # the contact line without relationship, style, insider
    assert not any(m.private for m in reply.messages)


@pytest.mark.parametrize(("who", "query", "sees"), [
    ("rep1", "sinopec", True), ("rep1", "daqing", False), ("rep1", "beijing bus", False),
    ("manager", "harbin", True), ("manager", "daqing", True), ("manager", "beijing bus", False),
    ("admin", "harbin", True), ("admin", "daqing", True), ("admin", "beijing bus", True),
])
async def test_permission_matrix_through_the_commands(coach: Coach, who: str, query: str,
                                                      sees: bool) -> None:
    reply = await ask(coach, who, f"account {query}")
    if sees:
        assert reply.messages[0].kind == "card"
        return
    # "not yours" reads exactly like a name that does not exist
    nowhere = await ask(coach, who, "account qqqq")
    assert reply.messages[0].kind == nowhere.messages[0].kind == "error"
    assert text_of(reply).replace(query, "X") == text_of(nowhere).replace("qqqq", "X")


async def test_several_matches_give_a_pick_list_of_command_lines(coach: Coach) -> None:
    reply = await ask(coach, "admin", "account bus")
    message = reply.messages[0]
    assert message.kind == "pick"
    values = [o.value for o in message.options]
    assert values == ["account Beijing Bus Group", "account Shanghai Bus Company"]
    assert "<code>account Beijing Bus Group</code>" in message.text
    chosen = await ask(coach, "admin", values[1])
    assert text_of(chosen).startswith("Shanghai Bus Company")


async def test_usage_and_nothing_found_are_clear_errors(coach: Coach) -> None:
    reply = await ask(coach, "rep1", "account")
    assert reply.messages[0].kind == "error" and "account Daqing" in text_of(reply)
    reply = await ask(coach, "rep1", "opp qqqqq")
    assert reply.messages[0].kind == "error" and "qqqqq" in text_of(reply)


async def test_opp_card_has_health_spin_mix_and_next_step(coach: Coach) -> None:
    card = text_of(await ask(coach, "rep1", "opp winter jackets"))
    assert card.startswith("Winter jackets 2027 — 中石化北京石油分公司 (Sinopec Beijing)")
    assert "3 · Dig out needs · Buying phase: purchase design" in card
    assert "Next step: Call back (due 2026-11-30)" in card
    assert "SPIN mix: S 0 · P 0 · I 0 · N 0 — no questions logged yet" in card
    assert "✗ no SPIN questions logged" in card
    assert "Qualification: ✗ need" in card


async def test_who_maps_the_buying_roles(coach: Coach) -> None:
    card = text_of(await ask(coach, "rep1", "who 中石化"))
    assert card.startswith("Who is who at 中石化北京石油分公司 (Sinopec Beijing)")
    assert card.index("Initiator") < card.index("Decision maker") < card.index("Evaluator")
    after_initiator = card.split("Initiator", 1)[1].split("Decision maker", 1)[0]
    assert "nobody recorded yet" in after_initiator
    assert "王海 (Wang Hai) · trust · owl" in card


async def test_pipeline_scopes_and_sorting(coach: Coach) -> None:
    own = text_of(await ask(coach, "rep1", "pipeline"))
    assert "Pipeline — your pipeline" in own and "Winter jackets 2027" in own
    assert "Drilling crew parkas" not in own
    team = text_of(await ask(coach, "manager", "pipeline team"))
    assert "Winter jackets 2027" in team and "Drilling crew parkas" in team
    assert "Drivers' uniforms" not in team
    assert "Total: 2 open, 8,000,000 CNY" in team
    by_health = text_of(await ask(coach, "manager", "pipeline team health"))
    assert "lowest health first" in by_health
    one = text_of(await ask(coach, "manager", "pipeline @rep2"))
    assert "Drilling crew parkas" in one and "Winter jackets" not in one
    for who, target in (("manager", "@rep3"), ("rep1", "@rep2"), ("rep1", "@nobody")):
        refused = await ask(coach, who, f"pipeline {target}")
        assert refused.messages[0].kind == "error" and "not yours" in text_of(refused)
    bad = await ask(coach, "rep1", "pipeline size")
    assert bad.messages[0].kind == "error" and "health" in text_of(bad)


async def test_zh_card_and_command_aliases(coach: Coach) -> None:
    await ask(coach, "rep1", "lang zh")
    card = text_of(await ask(coach, "rep1", "客户 中石化"))
    assert "漏斗阶段：3 · 挖掘需求" in card
    assert "决策者：王海 (Wang Hai)" in card
    assert "信赖 · 猫头鹰 · 中级内线" in card
    assert "逾期 20 天" in card


async def test_stalled_and_overdue_on_the_demo_company(db: Database) -> None:
    now = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
    await db.run(load_demo, now=now)
    coach = make_coach(db, now)
    await ask(coach, "wangfang", "lang en", org="demo")  # the demo manager speaks Chinese
    stalled = text_of(await ask(coach, "wangfang", "stalled", org="demo"))
    assert "Stalled — your team: 5" in stalled
    assert "26 days without activity (limit 21); next step 5 days overdue" in stalled
    overdue = text_of(await ask(coach, "wangfang", "overdue", org="demo"))
    assert "1-15 days: 114,000 CNY (1)" in overdue
    assert "90+ days: 520,000 CNY (1)" in overdue
    assert "Total overdue: 1,820,000 CNY in 5 invoices" in overdue
    assert ("YY-2026-0112 塞北水泥厂 (Saibei Cement Plant) — 580,000 CNY · 45 days overdue"
            in overdue)
    assert "last action: dunning letter" in overdue
    mine = text_of(await ask(coach, "lilei", "overdue", org="demo"))
    assert "YY-2026-0105" in mine and "YY-2026-0101" not in mine
    assert "Total overdue: 86,000 CNY in 1 invoices" in mine


async def test_analytics_for_a_manager_compares_reps_with_the_team(db: Database) -> None:
    now = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
    await db.run(load_demo, now=now)
    coach = make_coach(db, now)
    await ask(coach, "wangfang", "lang en", org="demo")
    text = text_of(await ask(coach, "wangfang", "analytics team 60", org="demo"))
    assert text.startswith("Coaching analytics — your team, last 60 days")
    zhang = text.split("Zhang Wei 张伟", 1)[1].split("\n\n", 1)[0]
    assert "SPIN mix (2 questions): S 50% · P 50% · I 0% · N 0%" in zhang
    assert "implication questions are 0% of the SPIN mix (team 17%)" in zhang
    assert "\nTeam\n" in text
    refused = await ask(coach, "lilei", "analytics @wangfang", org="demo")
    assert refused.messages[0].kind == "error"
    bad = await ask(coach, "lilei", "analytics 999", org="demo")
    assert bad.messages[0].kind == "error" and "1 to 366" in text_of(bad)


def _log_spin(session: Session) -> None:
    """rep1 asked S S P I on Winter jackets (one S 40 days ago, outside the 30-day window);
    rep2 asked S P I N on Drilling crew parkas."""
    asked = [("rep1", "sinopec-winter", "S", 40), ("rep1", "sinopec-winter", "S", 5),
             ("rep1", "sinopec-winter", "P", 4), ("rep1", "sinopec-winter", "I", 3),
             ("rep2", "daqing-crews", "S", 6), ("rep2", "daqing-crews", "P", 5),
             ("rep2", "daqing-crews", "I", 4), ("rep2", "daqing-crews", "N", 3)]
    for n, (rep, opp, kind, days) in enumerate(asked):
        at = NOW - timedelta(days=days)
        session.add(SpinEntry(id=uid("spin", str(n)), org_id=uid("org", "acme"),
                              opportunity_id=uid("opp", opp), user_id=uid("user", rep),
                              kind=kind, question=f"question {n}", asked_at=at, created_at=at))


@pytest.fixture
async def spin_coach(db: Database) -> Coach:
    await db.run(build)
    await db.run(_log_spin)
    return make_coach(db)


async def test_spinmix_of_an_opportunity_counts_all_its_questions(spin_coach: Coach) -> None:
    reply = await ask(spin_coach, "rep1", "spinmix winter jackets")
    card = text_of(reply)
    assert reply.messages[0].kind == "card"
    assert card.startswith(
        "SPIN mix — Winter jackets 2027 (中石化北京石油分公司 (Sinopec Beijing))")
    assert ("Winter jackets 2027 (4 questions): S 2 (50%) · P 1 (25%) · I 1 (25%) · N 0 (0%)"
            " — no need-payoff questions yet") in card
    assert "Team" not in card


async def test_spinmix_of_a_rep_over_30_days_compared_with_the_team(spin_coach: Coach) -> None:
    mine = text_of(await ask(spin_coach, "rep1", "spinmix"))
    assert mine.startswith("SPIN mix — your pipeline, last 30 days")
    # the question 40 days ago is outside the window
    assert "Rep1 (3 questions): S 1 (33%) · P 1 (33%) · I 1 (33%) · N 0 (0%)" in mine
    assert "Team (7 questions): S 2 (29%) · P 2 (29%) · I 2 (29%) · N 1 (14%)" in mine
    assert "Rep2" not in mine  # compared with the team, not shown one by one
    theirs = text_of(await ask(spin_coach, "manager", "spinmix @rep2"))
    assert "Rep2 (4 questions): S 1 (25%) · P 1 (25%) · I 1 (25%) · N 1 (25%) — a good mix" \
        in theirs
    team = text_of(await ask(spin_coach, "manager", "spinmix team"))
    assert team.startswith("SPIN mix — your team, last 30 days")
    assert team.index("Rep2 (4 questions)") < team.index("Rep1 (3 questions)") \
        < team.index("Team (7 questions)")


@pytest.mark.parametrize(("who", "command"), [
    ("rep1", "spinmix @rep2"), ("manager", "spinmix @rep3"), ("rep1", "spinmix @nobody"),
    ("manager2", "spinmix @rep1"),
])
async def test_spinmix_of_someone_elses_rep_is_not_yours(spin_coach: Coach, who: str,
                                                         command: str) -> None:
    reply = await ask(spin_coach, who, command)
    assert reply.messages[0].kind == "error" and "not yours" in text_of(reply)
    assert "Rep" not in text_of(reply)


@pytest.mark.parametrize(("who", "sees"), [("rep1", False), ("rep2", True), ("manager", True),
                                           ("manager2", False), ("admin", True)])
async def test_spinmix_of_an_opportunity_follows_the_permission_matrix(
        spin_coach: Coach, who: str, sees: bool) -> None:
    reply = await ask(spin_coach, who, "spinmix drilling crew")
    if sees:
        assert "Drilling crew parkas (4 questions)" in text_of(reply)
        return
    # someone else's opportunity reads exactly like one that does not exist
    nowhere = await ask(spin_coach, who, "spinmix qqqq")
    assert reply.messages[0].kind == nowhere.messages[0].kind == "error"
    assert (text_of(reply).replace("drilling crew", "X")
            == text_of(nowhere).replace("qqqq", "X"))


async def test_spinmix_in_chinese_and_in_the_help(spin_coach: Coach) -> None:
    await ask(spin_coach, "manager", "lang zh")
    card = text_of(await ask(spin_coach, "manager", "提问结构 团队"))
    assert card.startswith("SPIN 提问结构 —— 你的团队，最近 30 天")
    assert ("Rep2（共 4 个问题）：S 1（25%）· P 1（25%）· I 1（25%）· N 1（25%）"
            " — 提问结构良好") in card
    assert "团队（共 7 个问题）" in card
    helped = text_of(await ask(spin_coach, "manager", "help"))
    assert "提问结构 冬装" in helped
    await ask(spin_coach, "rep1", "lang en")
    assert "<code>spinmix @name</code>" in "\n".join(
        m.text for m in (await ask(spin_coach, "rep1", "help")).messages)
    # `spin` stays the SPIN dialog
    spin = await ask(spin_coach, "rep1", "spin winter jackets")
    assert not text_of(spin).startswith("SPIN mix")


async def test_spin_with_a_person_or_team_shows_the_mix(spin_coach: Coach) -> None:
    """`spin @rep` and `spin team` are the SPIN-mix look-up; `spin <opportunity>` the dialog."""
    assert text_of(await ask(spin_coach, "manager", "spin @rep2")) == text_of(
        await ask(spin_coach, "manager", "spinmix @rep2"))
    assert text_of(await ask(spin_coach, "manager", "/spin team")).startswith(
        "SPIN mix — your team, last 30 days")
    refused = await ask(spin_coach, "rep1", "spin @rep2")
    assert refused.messages[0].kind == "error" and "not yours" in text_of(refused)
    # the Chinese command words too
    await ask(spin_coach, "manager", "lang zh")
    assert text_of(await ask(spin_coach, "manager", "提问 团队")) == text_of(
        await ask(spin_coach, "manager", "提问结构 团队"))
    dialog = await ask(spin_coach, "manager", "提问 冬装")
    assert not text_of(dialog).startswith("SPIN 提问结构")
