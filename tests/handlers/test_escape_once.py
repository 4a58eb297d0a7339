"""User text is escaped once, at the edge (issue 14, item 13): a tapped Telegram question keeps
its markup (`<i>[2/24]`, not `&lt;i&gt;`), and the SPIN-mix title shows `Drivers'`, not
`Drivers&#39;`."""

from __future__ import annotations

import pytest

from bot.commands import load_commands
from bot.demo import load_demo
from store.db import Database
from tests.conversation_checks import START, converse
from tests.handlers.telegram.harness import Driver, running, shown

NAME = "Drivers' Tools & <Co>"


async def test_a_tapped_telegram_question_is_shown_escaped_once(db: Database) -> None:
    async with running(db) as h:
        driver = Driver.of(h, h.api.user(4242, language_code="en"))
        await driver.say("intake")
        await driver.say(NAME)
        question = driver.open_question()
        assert question is not None
        before = question["html"]
        await driver.say("Steel")  # a tap: the question is edited to show the answer
        edited = {m["message_id"]: m for m in h.api.sent(driver.chat_id)}[question["message_id"]]
        assert edited["html"].startswith(before)  # the same HTML, the answer appended
        assert "&lt;i&gt;" not in edited["html"] and "&amp;amp;" not in edited["html"]
        assert "<i>[" in edited["html"]
        text = shown(edited)
        assert NAME in text and "&#39;" not in text and "&amp;" not in text
        assert "→ " in text


@pytest.mark.parametrize("lang, title", [("en", "SPIN mix — Drivers' winter uniform"),
                                         ("zh", "SPIN 提问结构 —— Drivers' winter uniform")])
async def test_the_spin_mix_title_is_escaped_once(db: Database, lang: str, title: str) -> None:
    await db.run(load_demo, now=START)
    chat = await converse(db, ["spinmix Drivers"], user="zhangwei", org="demo", lang=lang,
                          registry=load_commands())
    assert title in chat.reply(0)
    assert "&#39;" not in chat.reply(0)
