"""The fake Bot API server itself, driven by python-telegram-bot's plain `Bot` (it is shared with
the outbox tests, so its scripting must do what it says)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from telegram import Bot
from telegram.error import BadRequest, Conflict, Forbidden, NetworkError, RetryAfter

from tests.fakes.telegram_api import FakeTelegramAPI


@pytest.fixture
async def bot() -> AsyncIterator[tuple[FakeTelegramAPI, Bot]]:
    with FakeTelegramAPI() as api:
        client = Bot(api.token, base_url=api.base_url)
        await client.initialize()
        try:
            yield api, client
        finally:
            await client.shutdown()


async def test_get_updates_long_polls_and_confirms(bot: tuple[FakeTelegramAPI, Bot]) -> None:
    api, client = bot
    started = time.monotonic()
    assert await client.get_updates(timeout=1) == ()
    assert time.monotonic() - started >= 0.9  # waited the whole timeout for nothing

    async def push_later() -> None:
        await asyncio.sleep(0.2)
        api.push_update(api.message_update(api.user(1), "hello"))

    started = time.monotonic()
    pusher = asyncio.create_task(push_later())
    [update] = await client.get_updates(timeout=5)
    await pusher
    assert time.monotonic() - started < 2  # answered as soon as the update came
    assert update.message is not None and update.message.text == "hello"
    # not confirmed yet: delivered again; confirmed by the next offset: gone
    assert len(await client.get_updates(timeout=0)) == 1
    assert await client.get_updates(offset=update.update_id + 1, timeout=0) == ()


async def test_get_updates_conflicts_with_a_webhook(bot: tuple[FakeTelegramAPI, Bot]) -> None:
    api, client = bot
    await client.set_webhook("https://example.com/hook", secret_token="abc")
    assert api.webhook["secret_token"] == "abc"
    with pytest.raises(Conflict):
        await client.get_updates(timeout=0)
    await client.delete_webhook()
    assert await client.get_updates(timeout=0) == ()


async def test_scripted_failures_hit_only_what_they_name(
        bot: tuple[FakeTelegramAPI, Bot]) -> None:
    api, client = bot
    api.fail_next(2, "429", method="sendMessage", chat_id=5, retry_after=3)
    api.fail_next(1, "403", method="sendPhoto")
    await client.send_message(6, "other chat")  # not chat 5: fine
    with pytest.raises(RetryAfter):
        await client.send_message(5, "one")
    with pytest.raises(RetryAfter):
        await client.send_message(5, "two")
    await client.send_message(5, "three")  # used up
    with pytest.raises(Forbidden, match="blocked by the user"):
        await client.send_photo(5, b"\x89PNG....")
    api.fail_next(1, "400")
    with pytest.raises(BadRequest, match=r"(?i)chat not found"):
        await client.send_message(5, "x")
    api.fail_next(1, "500")
    with pytest.raises(NetworkError):
        await client.send_message(5, "x")
    assert [c.failed for c in api.calls_to("sendMessage", chat_id=5)] == [
        "429", "429", None, "400", "500"]
    assert [m["text"] for m in api.sent(5)] == ["three"]


async def test_edits_and_html_like_telegram(bot: tuple[FakeTelegramAPI, Bot]) -> None:
    api, client = bot
    sent = await client.send_message(9, "<b>Q</b> &amp; A", parse_mode="HTML")
    assert api.sent(9)[0]["text"] == "Q & A"
    with pytest.raises(BadRequest, match="not modified"):
        await client.edit_message_text("<b>Q</b> &amp; A", 9, sent.message_id,
                                       parse_mode="HTML")
    await client.edit_message_text("<b>Q</b> &amp; A\n→ yes", 9, sent.message_id,
                                   parse_mode="HTML")
    assert api.sent(9)[0]["text"] == "Q & A\n→ yes"
    with pytest.raises(BadRequest, match=r"(?i)can't parse entities"):
        await client.send_message(9, "a <b>b", parse_mode="HTML")
    with pytest.raises(BadRequest, match="too long"):
        await client.send_message(9, "x" * 4097)
    document = await client.send_document(9, b"data", filename="a.docx")
    assert document.document is not None and document.document.file_name == "a.docx"
    [call] = api.calls_to("sendDocument")
    assert call.files["document"][:2] == ("a.docx", b"data")
