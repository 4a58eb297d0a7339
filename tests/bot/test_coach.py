"""The Coach service against a real database: one unit of work per turn, races, retries."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bot.app import build_engine
from bot.coach import Coach
from dialogs.messages import Inbound
from store import conversations as conv
from store.db import Database
from store.models import Account, Contact, DialogSession, Opportunity

SHANGHAI = timezone(timedelta(hours=8))


def clock() -> Callable[[], datetime]:
    now = [datetime(2026, 11, 27, 9, 0, tzinfo=SHANGHAI)]

    def tick() -> datetime:
        now[0] += timedelta(seconds=1)
        return now[0]

    return tick


def make_coach(db: Database) -> Coach:
    renderer, engine = build_engine()
    return Coach(db, engine, renderer, clock=clock())


def said(user: str, text: str, event_id: str | None = None) -> Inbound:
    return Inbound(platform="console", org_key="acme", user_key=user, text=text, user_name=user,
                   event_id=event_id)


async def talk(coach: Coach, user: str, *lines: str) -> str:
    out = []
    for line in lines:
        reply = await coach.handle(said(user, line))
        out.append("\n".join(m.text for m in reply.messages))
    return out[-1]


def count(model: type) -> Callable[[Session], int]:
    def _count(session: Session) -> int:
        return int(session.execute(select(func.count()).select_from(model)).scalar_one())

    return _count


async def test_a_new_coach_on_the_same_database_resumes_at_the_same_question(
        db: Database, database_url: str) -> None:
    last = await talk(make_coach(db), "li", "intake", "Daqing Oilfield", "oil")
    assert "[3/" in last and "What kind of organisation" in last

    db2 = Database(database_url)  # a new process: nothing shared but the database
    try:
        coach = make_coach(db2)
        greeting = await coach.greet(said("li", ""))
        assert "unfinished customer intake (3/" in greeting.messages[-1].text
        resumed = await talk(coach, "li", "resume")
        assert resumed == last
        assert await db2.run(count(Account)) == 1
    finally:
        await db2.dispose()


async def test_two_inputs_racing_for_one_dialog_cannot_both_apply(db: Database) -> None:
    coach = make_coach(db)
    await talk(coach, "li", "intake")

    def load(session: Session) -> conv.OpenDialog:
        found = conv.find_speaker(session, "console", "acme", "li")
        assert found is not None
        dialog = conv.current_dialog(session, found.user_id)
        assert dialog is not None
        return dialog

    dialog = await db.run(load)
    now = datetime(2026, 11, 27, tzinfo=SHANGHAI)
    await db.run(conv.save_dialog, dialog, state=dialog.state, status="active", now=now)
    with pytest.raises(conv.StaleSession):
        await db.run(conv.save_dialog, dialog, state=dialog.state, status="active", now=now)


async def test_a_redelivered_event_changes_nothing_twice(db: Database) -> None:
    coach = make_coach(db)
    await coach.handle(said("li", "intake", event_id="e1"))
    first = await coach.handle(said("li", "Daqing", event_id="e2"))
    again = await coach.handle(said("li", "Daqing", event_id="e2"))
    assert first.messages and again.messages == ()

    def versions(session: Session) -> list[int]:
        return list(session.execute(select(DialogSession.version)).scalars())

    assert await db.run(versions) == [2]
    assert await db.run(count(Account)) == 1


async def test_concurrent_users_each_keep_their_own_dialog(db: Database) -> None:
    coach = make_coach(db)

    async def rep(name: str) -> str:
        return await talk(coach, name, "intake", f"Account of {name}", "1", "1")

    outs = await asyncio.gather(*(rep(f"rep{i}") for i in range(8)))
    assert all("[4/" in out for out in outs)
    assert await db.run(count(Account)) == 8


async def test_commands_help_unknown_idle_and_language(db: Database) -> None:
    coach = make_coach(db)
    unknown = await talk(coach, "li", "/frobnicate")
    assert "I don't know “/frobnicate”" in unknown and "<code>intake</code>" in unknown
    idle = await talk(coach, "li", "hello there coach")
    assert "no dialog open" in idle
    zh = await talk(coach, "li", "lang zh")
    assert "语言：中文" in zh
    help_zh = await talk(coach, "li", "帮助")
    assert "登记新客户" in help_zh
    bad = await talk(coach, "li", "lang fr")
    assert "可用语言：en, zh" in bad
    started = await talk(coach, "li", "建档")
    assert "客户名称是什么" in started


async def test_lang_switch_mid_dialog_reasks_in_the_new_language(db: Database) -> None:
    coach = make_coach(db)
    await talk(coach, "li", "intake", "Daqing")
    switched = await talk(coach, "li", "lang zh")
    assert "Daqing属于哪个行业" in switched
    assert "[2/" in switched


async def test_contact_flow_finds_the_account_and_updates_an_existing_contact(
        db: Database) -> None:
    coach = make_coach(db)
    script = ["intake", "Daqing Oilfield Company", "1", "1", "skip", "skip", "1", "no", "skip",
              "skip", "skip", "2", "skip", "Liu Qiang", "Buyer", "2", "2", "4", "2", "4", "1",
              "skip", "skip", "no", "no", "cancel"]
    await talk(coach, "li", *script)
    asked = await talk(coach, "li", "contact", "Daqing Oilfeld")
    assert "Did you mean <b>Daqing Oilfield Company</b>?" in asked
    await talk(coach, "li", "yes", "liu qiang", "Head of procurement", "skip", "skip", "skip",
               "skip", "tiger", "trust")

    def contacts(session: Session) -> list[tuple[str, str | None, str | None, str | None]]:
        rows = session.execute(select(Contact.name, Contact.title, Contact.level,
                                      Contact.comm_style, Contact.relationship_stage))
        return [tuple(r) for r in rows]  # type: ignore[misc]

    rows = await db.run(contacts)
    # skip kept the recorded level; the answers given replaced title, style and stage
    assert rows == [("Liu Qiang", "Head of procurement", "senior", "tiger", "trust")]
    assert await db.run(count(Opportunity)) == 0  # the chained qualify was cancelled


async def test_turns_and_dialogs_are_counted_for_metrics(db: Database) -> None:
    from bot.metrics import Metrics

    metrics = Metrics()
    renderer, engine = build_engine()
    coach = Coach(db, engine, renderer, clock=clock(), metrics=metrics)
    await talk(coach, "li", "intake", "Daqing", "cancel")
    body = metrics.render()[0].decode()
    assert 'salescoach_turns_total{front_end="console",outcome="ok"} 3.0' in body
    assert 'salescoach_dialogs_started_total{flow="intake"} 1.0' in body
    assert 'salescoach_turn_seconds_count{front_end="console"} 3.0' in body


INTAKE_DAQING = ["intake", "Daqing Oilfield Company", "1", "1", "skip", "skip", "1", "no", "skip",
                 "skip", "skip", "2", "skip", "Liu Qiang", "Buyer", "2", "2", "4", "2", "4", "1",
                 "skip", "skip", "no", "no", "cancel"]


async def test_which_customer_in_a_big_org_searches_the_typed_name(db: Database) -> None:
    """Past `reference_cap` customers (or opportunities), "which one?" no longer compares the
    answer with a list cut at the cap (a customer sorted past it was "not found", or recorded
    twice) but searches for what was typed: exact, with a typo, by its customer's name."""
    coach = make_coach(db)
    coach.reference_cap = 5
    await talk(coach, "li", *INTAKE_DAQING)

    def crowd(session: Session) -> None:
        daqing = session.execute(select(Account)).scalar_one()
        for n in range(12):  # all sorted before "Daqing", so a list of 6 names misses it
            name = f"Anshan Steel Works {n:02d}"
            account = Account(org_id=daqing.org_id, owner_id=daqing.owner_id, name=name,
                              name_key=name.casefold())
            session.add(account)
            session.flush()
            session.add(Opportunity(org_id=daqing.org_id, account_id=account.id,
                                    owner_id=daqing.owner_id, name=f"Anshan uniforms {n:02d}"))
        session.add(Opportunity(org_id=daqing.org_id, account_id=daqing.id,
                                owner_id=daqing.owner_id, name="Oilfield workwear 2027"))

    await db.run(crowd)
    assert "The contact's name?" in await talk(coach, "li", "contact", "daqing oilfield company")
    typo = await talk(coach, "li", "cancel", "contact", "Daqing Oilfeld")
    assert "Did you mean <b>Daqing Oilfield Company</b>?" in typo
    unknown = await talk(coach, "li", "cancel", "contact", "Zhongyuan Bus Group")
    assert "I found no customer called “Zhongyuan Bus Group”" in unknown
    # an opportunity by its customer's name, then by its own
    by_customer = await talk(coach, "li", "cancel", "close", "Daqing Oilfield Company")
    assert "How will you close Oilfield workwear 2027?" in by_customer
    by_name = await talk(coach, "li", "cancel", "close", "oilfield workwear 2027")
    assert "How will you close Oilfield workwear 2027?" in by_name
    assert await db.run(count(Account)) == 13  # nothing recorded twice


async def test_lang_takes_the_language_by_name_in_either_language(db: Database) -> None:
    """`语言 中文`, `lang Chinese`, `lang zh-CN` are what people type; each language's catalog
    names both (lang.name.*). Inside a dialog the same words switch, never answer."""
    coach = make_coach(db)
    for line, said_back in [("语言 中文", "语言：中文。"), ("lang English", "Language: English."),
                            ("lang 汉语", "语言：中文。"), ("语言 英文", "Language: English."),
                            ("lang zh-CN", "语言：中文。"), ("lang en_GB", "Language: English.")]:
        assert said_back in await talk(coach, "li", line), line
    assert "Languages I speak: en, zh" in await talk(coach, "li", "lang Français")
    switched = await talk(coach, "li", "intake", "Daqing", "语言 中文")
    assert "语言：中文。" in switched and "Daqing属于哪个行业" in switched


async def test_a_wrong_choice_names_the_options_in_the_askers_language(db: Database) -> None:
    """The re-ask after a bad pick lists the options as they were shown: in Chinese for a
    Chinese rep (it listed the English labels)."""
    coach = make_coach(db)
    zh = await talk(coach, "li", "语言 中文", "建档", "大庆油田", "99")
    assert "请回复 1 到" in zh and "石油石化" in zh and "Oil & gas" not in zh
    english = await talk(coach, "li", "lang en", "cancel", "intake", "Daqing", "99")
    assert "Please reply with a number from 1 to" in english and "Oil &amp; gas" in english
