"""A press answers exactly the question it was shown with, of the one it was sent to (issue 14,
items 7 and 8).

The same scenarios run through the real Slack and Telegram front ends against the fake servers:
- an old question's button, pressed after the question was answered by typing, answers
  nothing (a polite, translated refusal; the old message shows the question closed);
- a press by someone other than the asked user changes nothing: no answer stored, nothing
  posted into the asked user's chat, and their own press still works afterwards;
- a forged press (a value that is none of the question's answers, or callback data no button
  holds) is refused without closing the question: the real answer still goes through.
"""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from store.db import Database
from store.models import Account
from tests.fakes.slack_api import FakeSlackAPI
from tests.handlers.slack.harness import FakeClock, SlackClient, SlackUser, make_client
from tests.handlers.slack.harness import plain as slack_plain
from tests.handlers.telegram.harness import Driver, Harness, running

TEXTS = {
    "en": {"start": "intake", "name": "Acme Steel", "steel": "8",
           "closed": "question is closed", "invalid": "not one of the answers",
           "tg_stale": "no longer open", "slack_closed": "Closed: this question is no longer open"},
    "zh": {"start": "建档", "name": "大庆钢铁", "steel": "8",
           "closed": "问题已经关闭", "invalid": "不是当前问题的选项之一",
           "tg_stale": "这个问题已经结束", "slack_closed": "已关闭：这个问题不再等待回答"},
}


def _accounts(session: Session) -> list[tuple[str, str | None, str | None]]:
    return [(a.name, a.industry, a.nature) for a in session.scalars(select(Account))]


# ---- the two front ends behind one small interface ---------------------------------------------


class SlackSide:
    platform = "slack"

    def __init__(self, slack: SlackClient) -> None:
        self.slack = slack
        self.fake = slack.fake

    def user(self, n: int, lang: str) -> SlackUser:
        return self.slack.user(f"U0USER{n}", name=f"rep{n}",
                               locale="zh-CN" if lang == "zh" else "en-US")

    async def say(self, who: SlackUser, text: str) -> None:
        await who.say(text)

    def question(self, who: SlackUser) -> Any:
        return who.last_question()

    @staticmethod
    def _elements(post: Any) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        return [(b, e) for b in post.params.get("blocks") or [] if b.get("type") == "actions"
                for e in b["elements"] if e["action_id"].startswith(("sc_answer", "sc_select"))]

    def values(self, post: Any) -> list[str]:
        out = []
        for _block, e in self._elements(post):
            out.extend([o["value"] for o in e["options"]] if e["type"] == "static_select"
                       else [e["value"]])
        return out

    async def press(self, who: SlackUser, post: Any, value: str) -> None:
        await self.slack.action(*self._press(who, post, value))

    def _press(self, who: SlackUser, post: Any, value: str) -> tuple[Any, ...]:
        for block, e in self._elements(post):
            if e["type"] == "static_select":
                option = next((o for o in e["options"] if o["value"] == value), None)
                if option is not None:
                    return who, post, block, e, {**e, "selected_option": option}
            elif e["value"] == value:
                return who, post, block, e, e
        raise AssertionError(f"no button {value!r}")

    async def forge(self, who: SlackUser, post: Any) -> None:
        """The first answer button pressed with a value that none of the answers has."""
        who_, post_, block, element, action = self._press(who, post, self.values(post)[0])
        action = copy.deepcopy(action)
        if "selected_option" in action:
            action["selected_option"]["value"] = "/lost"
        else:
            action["value"] = element["value"] = "/lost"
        await self.slack.action(who_, post_, block, element, action)

    def mark(self) -> int:
        return len(self.fake.calls())

    def posted_to(self, who: SlackUser, since: int) -> list[str]:
        """What was posted into `who`'s DM (or updated there) since `since`."""
        return [c.method for c in self.fake.calls()[since:]
                if c.method in ("chat.postMessage", "chat.update", "chat.postEphemeral")
                and c.params.get("channel") == who.dm]

    def refusal(self, who: SlackUser, since: int) -> str:
        return "\n".join(self.slack.dm_texts(who.dm, since))

    def closed_shown(self, post: Any, lang: str) -> bool:
        ts = post.response["ts"]
        updates = [c for c in self.fake.calls("chat.update") if c.params.get("ts") == ts]
        if not updates:
            return False
        blocks = updates[-1].params.get("blocks") or []
        text = " ".join(slack_plain(e.get("text", "")) for b in blocks
                        if b.get("type") == "context" for e in b["elements"])
        return TEXTS[lang]["slack_closed"] in text and not any(
            b.get("type") == "actions" for b in blocks)

    def has_buttons(self, post: Any) -> bool:
        ts = post.response["ts"]
        updates = [c for c in self.fake.calls("chat.update") if c.params.get("ts") == ts]
        blocks = updates[-1].params.get("blocks") if updates else post.params.get("blocks")
        return any(b.get("type") == "actions" for b in blocks or [])


class TelegramSide:
    platform = "telegram"

    def __init__(self, h: Harness) -> None:
        self.h = h
        self.api = h.api

    def user(self, n: int, lang: str) -> Driver:
        return Driver.of(self.h, self.api.user(9000 + n, language_code=lang))

    async def say(self, who: Driver, text: str) -> None:
        await who.deliver(self.api.message_update(who.user, text))

    def question(self, who: Driver) -> dict[str, Any]:
        question = who.open_question()
        assert question is not None
        return question

    def _answers(self, message: dict[str, Any]) -> list[dict[str, Any]]:
        return [b for b in self.api.buttons(message) if b["callback_data"].startswith("a:")]

    def values(self, message: dict[str, Any]) -> list[str]:
        return [b["callback_data"] for b in self._answers(message)]

    def _now(self, message: dict[str, Any]) -> dict[str, Any]:
        chat = message["chat"]["id"]
        return {m["message_id"]: m for m in self.api.sent(chat)}[message["message_id"]]

    async def press(self, who: Driver, message: dict[str, Any], value: str) -> None:
        await who.deliver(self.api.callback_update(who.user, self._now(message), value))

    async def forge(self, who: Driver, message: dict[str, Any]) -> None:
        """Callback data that no button of the message holds (a keyboard that does not exist)."""
        data = self.values(message)[0]
        op, _key, index, *rest = data.split(":")
        forged = ":".join([op, "ZZZZZZZZZZ", index, *rest])
        await who.deliver(self.api.callback_update(who.user, self._now(message), forged))

    def mark(self) -> int:
        return len(self.api.calls)

    def posted_to(self, who: Driver, since: int) -> list[str]:
        return [c.method for c in self.api.calls[since:]
                if c.method in ("sendMessage", "editMessageText", "editMessageReplyMarkup")
                and str(c.params.get("chat_id")) == str(who.chat_id)]

    def refusal(self, who: Driver, since: int) -> str:
        answers = [str(c.params.get("text") or "") for c in self.api.calls[since:]
                   if c.method == "answerCallbackQuery"]
        sent = [str(c.params.get("text") or "") for c in self.api.calls[since:]
                if c.method == "sendMessage" and str(c.params.get("chat_id")) == str(who.chat_id)]
        return "\n".join(answers + sent)

    def closed_shown(self, message: dict[str, Any], lang: str) -> bool:
        return not self._now(message).get("reply_markup")

    def has_buttons(self, message: dict[str, Any]) -> bool:
        return bool(self._now(message).get("reply_markup"))


@asynccontextmanager
async def side(platform: str, db: Database, database_url: str) -> AsyncIterator[Any]:
    if platform == "slack":
        with FakeSlackAPI() as fake:
            client, http = await make_client(fake, database_url, clock=FakeClock())
            try:
                yield SlackSide(client)
            finally:
                await client.front.stop()
                await http.aclose()
                await client.app.close()
    else:
        async with running(db) as h:
            yield TelegramSide(h)


PLATFORMS = ["slack", "telegram"]


async def _at_industry(s: Any, who: Any, lang: str) -> Any:
    """`who` opens an intake and names the customer: the industry question, with buttons."""
    t = TEXTS[lang]
    await s.say(who, t["start"])
    await s.say(who, t["name"])
    return s.question(who)


# ---- item 7: an old question's buttons answer nothing -----------------------------------------


@pytest.mark.parametrize("lang", ["en", "zh"])
@pytest.mark.parametrize("platform", PLATFORMS)
async def test_an_old_button_answers_nothing_and_shows_closed(
        db: Database, database_url: str, platform: str, lang: str) -> None:
    t = TEXTS[lang]
    async with side(platform, db, database_url) as s:
        rep = s.user(1, lang)
        industry = await _at_industry(s, rep, lang)
        old_value = s.values(industry)[0]
        await s.say(rep, t["steel"])  # answered by typing: the next question is asked
        nature = s.question(rep)
        mark = s.mark()
        await s.press(rep, industry, old_value)  # the old question's first button
        refusal = s.refusal(rep, mark)
        assert (t["tg_stale"] if platform == "telegram" else t["closed"]) in refusal, refusal
        assert s.closed_shown(industry, lang)
        # nothing was stored by the old button, and the open question still takes its answer
        assert await db.run(_accounts) == [(t["name"], "steel", None)]
        await s.press(rep, nature, s.values(nature)[0])
        (name, industry_code, nature_code), = await db.run(_accounts)
        assert (name, industry_code) == (t["name"], "steel") and nature_code is not None


# ---- item 8: someone else's press, a forged press -----------------------------------------------


@pytest.mark.parametrize("platform", PLATFORMS)
async def test_a_press_by_someone_else_changes_nothing(db: Database, database_url: str,
                                                       platform: str) -> None:
    t = TEXTS["en"]
    async with side(platform, db, database_url) as s:
        victim, other = s.user(1, "en"), s.user(2, "en")
        industry = await _at_industry(s, victim, "en")
        value = s.values(industry)[0]
        await s.say(other, "help")  # the other one is known to the coach too
        mark = s.mark()
        await s.press(other, industry, value)  # on the victim's question message
        assert s.posted_to(victim, mark) == []  # nothing into the victim's chat, no edit
        assert s.has_buttons(industry)
        assert await db.run(_accounts) == [(t["name"], None, None)]
        if platform == "slack":
            assert t["closed"] in s.refusal(other, mark)  # told in their own DM
        # the victim's own press still answers their question
        await s.press(victim, industry, value)
        (_name, industry_code, _nature), = await db.run(_accounts)
        assert industry_code is not None


@pytest.mark.parametrize("lang", ["en", "zh"])
@pytest.mark.parametrize("platform", PLATFORMS)
async def test_a_forged_press_is_refused_and_the_question_stays_open(
        db: Database, database_url: str, platform: str, lang: str) -> None:
    t = TEXTS[lang]
    async with side(platform, db, database_url) as s:
        rep = s.user(1, lang)
        industry = await _at_industry(s, rep, lang)
        mark = s.mark()
        await s.forge(rep, industry)
        refusal = s.refusal(rep, mark)
        assert (t["tg_stale"] if platform == "telegram" else t["invalid"]) in refusal, refusal
        assert s.has_buttons(industry)  # the live keyboard stays
        assert await db.run(_accounts) == [(t["name"], None, None)]
        await s.press(rep, industry, s.values(industry)[0])  # the real answer still counts
        (_name, industry_code, _nature), = await db.run(_accounts)
        assert industry_code is not None
