"""Commands are not swallowed as answers; facts survive a language switch (issue 13, items 2, 10).

A dialog the coach called paused ("You have an unfinished customer intake. Type resume") takes
no answer until `resume` or a tap on its question; while it is paused every line is a command.
While a dialog is active, a line that starts with a command word and names a known record is
asked about instead of stored. `lang` mid-dialog asks the question again with its facts, and
`chat --lang` sets the session's language, not the stored preference.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.commands import load_commands
from bot.demo import load_demo
from store.db import Database
from store.models import Account, User
from tests import scenarios as sc
from tests.conversation_checks import START, check_no_failure, converse
from tests.handlers.telegram.harness import Driver, running

CASES = {
    "en": {"start": "intake", "name": "Acme Steel", "look": "account acme", "stray": "Acme",
           "resume": "resume", "steel": "8", "paused": "is paused, so I saved nothing",
           "card": "Acme Steel — active", "held": "begins with a command",
           "industry": "Which industry is Acme Steel in?"},
    "zh": {"start": "建档", "name": "大庆油田", "look": "客户 大庆", "stray": "大庆",
           "resume": "继续", "steel": "8", "paused": "已暂停，这一行没有保存",
           "card": "大庆油田", "held": "以命令开头", "industry": "大庆油田属于哪个行业？"},
}


def _account(session: Session) -> list[tuple[str, str | None]]:
    return [(a.name, a.industry) for a in session.scalars(select(Account))]


@pytest.mark.parametrize("lang", ["en", "zh"])
async def test_a_paused_dialog_takes_no_answer_until_resume(db: Database, lang: str) -> None:
    c = CASES[lang]
    await converse(db, [c["start"], c["name"]], lang=lang, registry=load_commands())
    # a new session (a restart): the greeting says the intake waits for resume
    chat = await converse(db, [c["look"], c["stray"], c["resume"], c["steel"]], lang=lang,
                          registry=load_commands())
    assert c["card"] in chat.reply(0)  # the look-up ran, it was not saved as the industry
    assert c["paused"] in chat.reply(1)
    assert c["industry"] in chat.reply(2)
    assert await db.run(_account) == [(c["name"], "steel")]
    for _typed, reply in chat.turns:
        check_no_failure(reply, _typed)


@pytest.mark.parametrize("lang", ["en", "zh"])
async def test_a_command_line_naming_a_record_is_asked_about(db: Database, lang: str) -> None:
    c = CASES[lang]
    chat = await converse(db, [c["start"], c["name"], c["look"], "2", c["look"], "1"],
                          lang=lang, registry=load_commands())
    assert c["held"] in chat.reply(2)
    assert c["card"] in chat.reply(3)  # 2: run the look-up
    # 1: it is the answer (not an industry, so the question is asked again); nothing was
    # stored in between
    assert c["industry"] in chat.reply(5)
    assert await db.run(_account) == [(c["name"], None)]


async def test_a_plain_answer_with_a_command_word_and_no_record_is_an_answer(
        db: Database) -> None:
    """`account management team` names no record: it is the answer, as before."""
    chat = await converse(db, ["intake", "account management team"], registry=load_commands())
    assert "begins with a command" not in chat.reply(1)
    assert await db.run(_account) == [("account management team", None)]


async def test_telegram_paused_after_start_then_resumed_by_a_tap(db: Database) -> None:
    async with running(db) as h:
        driver = Driver.of(h, h.api.user(777, language_code="en"))
        await driver.say("intake")
        await driver.say("Acme Steel")
        greeting = await driver.say("/start")
        assert "Type resume to continue" in greeting
        assert "Acme Steel — active" in await driver.say("account acme")
        assert "is paused, so I saved nothing" in await driver.say("Steel works")
        assert "Which industry is Acme Steel in?" in await driver.say("resume")
        await driver.say("Steel")  # a tap on the resumed question's button
    assert await db.run(_account) == [("Acme Steel", "steel")]


# ---- language switch ---------------------------------------------------------------------------

UP_TO_PAYMENT = [line for line, _ in sc.METHOD_EN[:sc.METHOD_EN.index(
    ("YY-2026-0200", "still owed on YY-2026-0200: 360,000 CNY")) + 1]]


async def test_lang_mid_dialog_keeps_the_facts_of_the_question(db: Database) -> None:
    await db.run(load_demo, now=START)
    chat = await converse(db, [*UP_TO_PAYMENT, "lang zh", "lang en", "resume"],
                          user=sc.METHOD_USER, org=sc.METHOD_ORG, registry=load_commands())
    assert "YY-2026-0200 尚欠 360,000 CNY" in chat.reply(-3)
    assert "still owed on YY-2026-0200: 360,000 CNY" in chat.reply(-2)
    assert "still owed on YY-2026-0200: 360,000 CNY" in chat.reply(-1)


def _lang_of(session: Session, name: str) -> Any:
    return session.scalar(select(User.lang).where(User.display_name == name))


async def test_chat_lang_sets_the_session_language_only(db: Database) -> None:
    await converse(db, ["lang zh"], user="manager1")  # their stored preference: Chinese
    chat = await converse(db, ["help"], user="manager1", lang="en")
    assert "What I can do" in chat.reply(0)
    assert await db.run(_lang_of, "manager1") == "zh"
    # typed inside the session, `lang` is theirs to change
    chat = await converse(db, ["lang en", "help"], user="manager1", lang="zh")
    assert "What I can do" in chat.reply(1)
    assert await db.run(_lang_of, "manager1") == "en"
