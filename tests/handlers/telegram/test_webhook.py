"""The webhook, private chats, buttons: security, redelivery, double taps, escaping, errors."""

from __future__ import annotations

import asyncio
import base64
import logging
import re
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bot.commands import CommandRequest, Registry
from dialogs.messages import Outbound
from store.db import Database
from store.models import Account, Identity, ProcessedEvent, User
from tests import scenarios as sc
from tests.conversation_checks import START
from tests.handlers.telegram.harness import Driver, Harness, running, shown
from tests.handlers.test_console import answers_before

REP = 5001


def _count(model: Any) -> Any:
    def count(session: Session) -> int:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)
    return count


def _accounts(session: Session) -> list[tuple[str, str | None, list[Any]]]:
    return [(a.name, a.industry, a.purchase_departments)
            for a in session.scalars(select(Account)).all()]


def _blocked(session: Session) -> Any:
    return session.scalar(select(Identity.blocked_at).where(Identity.external_id == str(REP)))


def texts(h: Harness, chat_id: int = REP) -> list[str]:
    return [shown(m) for m in h.api.sent(chat_id)]


async def test_wrong_or_missing_secret_gets_403_and_changes_nothing(db: Database) -> None:
    async with running(db) as h:
        update = h.api.message_update(h.api.user(REP), "/intake")
        for secret in (None, "", "wrong", "s3cret-Token_4"):
            response = await h.post(update, secret=secret)
            assert response.status_code == 403
        assert h.api.calls_to("sendMessage") == []
        assert await db.run(_count(User)) == 0
        assert await db.run(_count(ProcessedEvent)) == 0
        # the same update with the right secret is not "already seen"
        assert (await h.post(update)).status_code == 200
        assert "[1/24] What is the customer's name?" in texts(h)[-1]


async def test_garbage_body_is_a_400(db: Database) -> None:
    async with running(db) as h:
        assert (await h.post({}, raw=b"{not json")).status_code == 400
        assert (await h.post({}, raw=b"[1, 2]")).status_code == 400
        assert h.api.calls_to("sendMessage") == []


@pytest.mark.parametrize(("code", "greeting"), [
    ("zh-hans", "Li Lei，您好！"), ("zh", "Li Lei，您好！"), ("en-GB", "Hi Li Lei!"),
    ("de", "Hi Li Lei!"), (None, "Hi Li Lei!")])
async def test_start_greets_in_the_users_telegram_language(
        db: Database, code: str | None, greeting: str) -> None:
    async with running(db) as h:
        await h.post(h.api.message_update(h.api.user(REP, language_code=code), "/start"))
        [text] = texts(h)
        assert text.startswith(greeting), text


async def test_start_with_a_payload_opens_that_dialog(db: Database) -> None:
    async with running(db) as h:
        user = h.api.user(REP)
        await h.post(h.api.message_update(user, "/start intake"))
        assert "[1/24] What is the customer's name?" in texts(h)[-1]
        line = base64.urlsafe_b64encode(b"lang zh").decode().rstrip("=")
        await h.post(h.api.message_update(user, f"/start q-{line}"))
        assert any(t.startswith("语言：中文。") for t in texts(h))
        # an unknown payload just greets
        await h.post(h.api.message_update(user, "/start nonsense-payload"))
        assert "您好" in texts(h)[-2] and "未完成" in texts(h)[-1], texts(h)[-2:]


async def test_repeated_update_id_changes_nothing(db: Database) -> None:
    async with running(db) as h:
        user = h.api.user(REP)
        await h.post(h.api.message_update(user, "/intake"))
        answer = h.api.message_update(user, "Daqing Oilfield Company")
        for _ in range(3):
            assert (await h.post(answer)).status_code == 200
        questions = [t for t in texts(h) if "Which industry" in t]
        assert len(questions) == 1
        assert await db.run(_accounts) == [("Daqing Oilfield Company", None, [])]
        start = h.api.message_update(user, "/start")
        await h.post(start)
        await h.post(start)
        assert sum("Hi Li Lei" in t for t in texts(h)) == 1


async def _to_industry(h: Harness) -> dict[str, Any]:
    user = h.api.user(REP)
    await h.post(h.api.message_update(user, "/intake"))
    await h.post(h.api.message_update(user, "Daqing Oilfield Company"))
    question = h.api.last_message(REP)
    assert "[2/24] Which industry is Daqing Oilfield Company in?" in shown(question)
    return question


async def test_a_tap_answers_edits_the_question_and_stops_the_spinner(db: Database) -> None:
    async with running(db) as h:
        question = await _to_industry(h)
        labels = [b["text"] for b in h.api.buttons(question)]
        assert "Oil & gas" in labels and "◀ Back" in labels and "✖ Cancel" in labels
        await h.post(h.api.tap(h.api.user(REP), question, "Oil & gas"))
        [answered] = h.api.calls_to("answerCallbackQuery")
        assert "text" not in answered.params
        [edit] = h.api.calls_to("editMessageText")
        assert edit.params["text"].endswith("\n\n→ <b>Oil &amp; gas</b>")
        assert edit.params["message_id"] == str(question["message_id"])
        now = next(m for m in h.api.sent(REP) if m["message_id"] == question["message_id"])
        assert "reply_markup" not in now
        assert "[3/24]" in texts(h)[-1]
        assert await db.run(_accounts) == [("Daqing Oilfield Company", "oil_gas", [])]


async def test_double_tap_answers_once(db: Database) -> None:
    async with running(db) as h:
        question = await _to_industry(h)
        user = h.api.user(REP)
        first = h.api.tap(user, question, "Oil & gas")
        second = h.api.tap(user, question, "Mining")  # the thumb slipped
        responses = await asyncio.gather(h.post(first), h.post(second))
        assert [r.status_code for r in responses] == [200, 200]
        assert sum("[3/24]" in t for t in texts(h)) == 1
        assert len(h.api.calls_to("answerCallbackQuery")) == 2
        assert len(h.api.calls_to("editMessageText")) == 1
        assert await db.run(_accounts) == [("Daqing Oilfield Company", "oil_gas", [])]
        # the very same tap delivered twice (a redelivered update) also changes nothing
        await h.post(first)
        assert sum("[3/24]" in t for t in texts(h)) == 1


async def test_tap_on_an_old_question_is_refused(db: Database) -> None:
    async with running(db) as h:
        question = await _to_industry(h)
        user = h.api.user(REP)
        await h.post(h.api.message_update(user, "oil"))  # typed instead of tapped
        assert "[3/24]" in texts(h)[-1]
        await h.post(h.api.tap(user, question, "Mining"))
        [answer] = h.api.calls_to("answerCallbackQuery")
        assert answer.params["text"].startswith("This question is no longer open.")
        [drop] = h.api.calls_to("editMessageReplyMarkup")
        assert "reply_markup" not in drop.params or not drop.params["reply_markup"]
        assert await db.run(_accounts) == [("Daqing Oilfield Company", "oil_gas", [])]
        assert "[3/24]" in texts(h)[-1]


async def test_multi_choice_ticks_and_done(db: Database) -> None:
    async with running(db) as h:
        user = h.api.user(REP)
        driver = Driver.of(h, user)
        for line in ["intake", *answers_before("2, 3, 5")]:
            h.api.chats[str(REP)] = h.api.private_chat(user)
            await h.post(h.api.message_update(user, line))
        question = h.api.last_message(REP)
        assert driver.open_question() is not None
        assert "Which departments take part in buying" in shown(question) or \
            any(b["callback_data"].startswith("d:") for b in h.api.buttons(question))

        def current() -> dict[str, Any]:
            return next(m for m in h.api.sent(REP) if m["message_id"] == question["message_id"])

        await h.post(h.api.tap(user, current(), "✔ Done"))
        [alert] = h.api.calls_to("answerCallbackQuery")
        assert alert.params["text"] == "Tick at least one option, then tap Done."
        answers = [b for b in h.api.buttons(question) if b["callback_data"].startswith("t:")]
        for index in (1, 2, 4, 2):  # tick 2, 3, 5; untick 3
            await h.post(h.api.callback_update(user, current(), answers[index]["callback_data"]))
        ticked = [b["text"] for b in h.api.buttons(current()) if b["text"].startswith("✓ ")]
        assert ticked == [f"✓ {answers[1]['text']}", f"✓ {answers[4]['text']}"]
        await h.post(h.api.tap(user, current(), "✔ Done"))
        assert "reply_markup" not in current()
        assert current()["text"].endswith(f"→ {answers[1]['text']}, {answers[4]['text']}")
        [(_name, _industry, departments)] = await db.run(_accounts)
        assert departments == ["procurement", "user_dept"]


async def test_user_text_with_tags_and_ampersands_is_escaped(db: Database) -> None:
    name = "<b>Bold</b> & Sons <i>x"
    async with running(db) as h:
        user = h.api.user(REP)
        await h.post(h.api.message_update(user, "/intake"))
        await h.post(h.api.message_update(user, name))
        sent = h.api.calls_to("sendMessage", ok=True)[-1].params["text"]
        assert "&lt;b&gt;Bold&lt;/b&gt; &amp; Sons &lt;i&gt;x" in sent
        assert h.api.calls_to("sendMessage", ok=False) == []  # Telegram parsed every message
        assert f"Which industry is {name} in?" in texts(h)[-1]
        assert await db.run(_accounts) == [(name, None, [])]


async def test_chinese_rep_in_chinese(db: Database) -> None:
    async with running(db) as h:
        user = h.api.user(REP, first_name="王", last_name="建国", language_code="zh-hans")
        for line in ["/start", "建档", "北京公交集团", "公交集团"]:
            await h.post(h.api.message_update(user, line))
        all_text = "\n".join(texts(h))
        assert "王 建国，您好！" in all_text
        assert sc.INTAKE_ZH_FIRST_QUESTION in all_text
        assert "[3/24] 客户的单位性质是什么？" in texts(h)[-1]
        labels = [b["text"] for b in h.api.buttons(h.api.last_message(REP))]
        assert "✖ 取消" in labels
        assert await db.run(_accounts) == [("北京公交集团", "bus_transport", [])]


async def test_flood_control_on_a_reply_is_waited_out(db: Database) -> None:
    async with running(db) as h:
        h.api.fail_next(1, "429", method="sendMessage", retry_after=1)
        await h.post(h.api.message_update(h.api.user(REP), "/intake"))
        failed, delivered = h.api.calls_to("sendMessage")[:2]
        assert failed.failed == "429" and delivered.failed is None
        assert delivered.at - failed.at >= 0.95
        assert "[1/24]" in texts(h)[-1]


async def test_a_user_who_blocked_the_bot_is_recorded(db: Database) -> None:
    async with running(db) as h:
        user = h.api.user(REP)
        await h.post(h.api.message_update(user, "/help"))
        h.api.fail_next(1, "403", chat_id=REP)
        response = await h.post(h.api.message_update(user, "/intake"))
        assert response.status_code == 200
        assert await db.run(_blocked) is not None
        # the answer was kept: the dialog is open for when they come back
        await h.post(h.api.message_update(user, "/start"))
        assert await db.run(_blocked) is None
        assert "unfinished customer intake" in texts(h)[-1]


async def test_membership_updates_record_blocking(db: Database) -> None:
    async with running(db) as h:
        user = h.api.user(REP)
        await h.post(h.api.message_update(user, "/help"))

        def member(status: str) -> dict[str, Any]:
            return {"update_id": h.api.next_update_id(), "my_chat_member": {
                "chat": h.api.private_chat(user), "from": user, "date": 1,
                "old_chat_member": {"status": "member", "user": h.api.user(h.api.bot_id)},
                "new_chat_member": {"status": status, "user": {
                    "id": h.api.bot_id, "is_bot": True, "first_name": "Coach"},
                    **({"until_date": 0} if status == "kicked" else {})}}}

        await h.post(member("kicked"))
        assert await db.run(_blocked) is not None
        await h.post(member("member"))
        assert await db.run(_blocked) is None


async def test_a_photo_gets_a_translated_text_only_answer(db: Database) -> None:
    async with running(db) as h:
        user = h.api.user(REP, language_code="zh")
        update = h.api.message_update(user, "x")
        del update["message"]["text"]
        update["message"]["photo"] = [{"file_id": "f", "file_unique_id": "u", "width": 1,
                                       "height": 1}]
        await h.post(update)
        assert texts(h) == ["我只能读文字。请输入您的回答，或点一个按钮。"]


def _boom(registry: Registry) -> None:
    def explode(_req: CommandRequest) -> list[Outbound]:
        raise RuntimeError("the database caught fire")
    registry.add("boom", explode, hidden=True)


async def test_an_error_is_answered_politely_with_a_logged_reference(
        db: Database, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="handlers.telegram")
    async with running(db, register=_boom) as h:
        user = h.api.user(REP, language_code="zh")
        response = await h.post(h.api.message_update(user, "/boom"))
        assert response.status_code == 200
        [text] = texts(h)
        assert text.startswith("抱歉，系统出了点问题")
        ref = re.search(r"编号 ([0-9a-f]{8})", text)
        assert ref is not None
        [record] = [r for r in caplog.records if ref.group(1) in r.getMessage()]
        assert record.exc_info is not None and "the database caught fire" in str(
            record.exc_info[1])


async def test_command_menus_for_private_chats_and_groups_in_both_languages(
        db: Database) -> None:
    async with running(db) as h:
        calls = h.api.calls_to("setMyCommands")
        seen = {(c.params["scope"]["type"], c.params.get("language_code")) for c in calls}
        assert seen == {(scope, lang) for scope in ("all_private_chats", "all_group_chats")
                        for lang in (None, "en", "zh")}
        coach = h.app.coach
        for call in calls:
            names = [c["command"] for c in call.params["commands"]]
            for c in call.params["commands"]:
                assert re.fullmatch(r"[a-z0-9_]{1,32}", c["command"])
                assert 1 <= len(c["description"]) <= 256
                assert not re.search(r"</?(b|i|code)>|&\w+;", c["description"])
            assert "intake" in names and "help" in names
            assert set(names) <= set(coach.help_names)
            if call.params["scope"]["type"] == "all_group_chats":
                assert "channel" in names
            else:
                assert "channel" not in names
        zh = next(c for c in calls if c.params.get("language_code") == "zh")
        intake = next(c for c in zh.params["commands"] if c["command"] == "intake")
        assert intake["description"].startswith("登记新客户")
        # the webhook is registered with its secret
        [hook] = h.api.calls_to("setWebhook")
        assert hook.params["secret_token"] == "s3cret-Token_42"
        assert hook.params["url"] == "https://coach.example.com/telegram/webhook"


async def test_commands_with_the_bots_name_and_odd_slashes(db: Database) -> None:
    async with running(db) as h:
        user = h.api.user(REP)
        await h.post(h.api.message_update(user, "/intake@salescoach_test_bot"))
        assert "[1/24] What is the customer's name?" in texts(h)[-1]
        await h.post(h.api.message_update(user, "/help@some_other_bot"))
        assert len(texts(h)) == 2  # the other bot's command: not for us
        for odd in ("/", "/ Daqing"):
            before = len(texts(h))
            await h.post(h.api.message_update(user, odd))
            assert len(texts(h)) > before, odd  # answered, never silently dropped


async def test_a_wrong_token_or_missing_secret_fails_at_start_saying_what_to_fix(
        db: Database) -> None:
    from handlers.telegram import TelegramConfigError, TelegramFrontEnd
    from tests.fakes.telegram_api import FakeTelegramAPI
    from tests.handlers.telegram.harness import make_app

    with FakeTelegramAPI() as api:
        app = make_app(db, api)
        app.settings.telegram_bot_token = "123:not-the-token"
        front = TelegramFrontEnd(app)
        with pytest.raises(TelegramConfigError, match="refused TELEGRAM_BOT_TOKEN"):
            await front.start()
        app.settings.telegram_webhook_secret = None
        with pytest.raises(TelegramConfigError, match="TELEGRAM_WEBHOOK_SECRET is not"):
            TelegramFrontEnd(app)


async def test_which_customer_offers_the_reps_own_customers_as_buttons(db: Database) -> None:
    """"At which customer?" comes with the rep's customers to tap (most recently changed
    first); a tap answers it like the typed name, and the question shows the choice."""
    async with running(db) as h:
        user = h.api.user(REP)
        await h.post(h.api.message_update(user, "/start"))

        def accounts(session: Session) -> None:
            me = session.scalars(select(User)).one()
            for n, name in enumerate(["Daqing Oilfield", "Beijing Bus Group <b>&</b>"]):
                session.add(Account(org_id=me.org_id, owner_id=me.id, name=name,
                                    name_key=name.casefold(),
                                    updated_at=START + timedelta(days=n)))

        await db.run(accounts)
        await h.post(h.api.message_update(user, "/contact"))
        question = h.api.last_message(REP)
        assert "[1/11] At which customer?" in shown(question)
        labels = [b["text"] for b in h.api.buttons(question)]
        assert labels[:2] == ["Beijing Bus Group <b>&</b>", "Daqing Oilfield"], labels
        await h.post(h.api.tap(user, question, "Beijing Bus Group <b>&</b>"))
        [edit] = h.api.calls_to("editMessageText")
        assert edit.params["text"].endswith(
            "\n\n→ <b>Beijing Bus Group &lt;b&gt;&amp;&lt;/b&gt;</b>")
        assert "[2/11] The contact's name?" in texts(h)[-1]
