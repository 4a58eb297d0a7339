"""The fake Slack Web API's long poll (`GET /_wait`), what benchmarks/slack_http.py waits on to
count the work an app does after its ack."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
from slack_sdk.web.async_client import AsyncWebClient

from tests.fakes.slack_api import FakeSlackAPI

QUESTION: list[dict[str, Any]] = [
    {"type": "section", "text": {"type": "mrkdwn", "text": "Which industry?"}},
    {"type": "actions", "block_id": "sc_options", "elements": []}]


async def test_wait_answers_with_the_first_matching_call_once_it_is_made() -> None:
    with FakeSlackAPI() as fake:
        client = AsyncWebClient(token="xoxb-t", base_url=fake.api_url)
        dm = (await client.conversations_open(users="U0REP1"))["channel"]["id"]
        async with httpx.AsyncClient(base_url=fake.url, timeout=10) as http:
            after = time.time()
            waiting = asyncio.create_task(http.get("/_wait", params={
                "after": after, "method": "chat.postMessage", "channel": dm, "actions": 1,
                "timeout": 5}))
            await asyncio.sleep(0.05)
            assert not waiting.done()
            await client.chat_postMessage(channel=dm, text="An intro without buttons")
            await client.chat_postMessage(channel=dm, text="Which industry?", blocks=QUESTION)
            found = (await waiting).json()
            assert found["params"]["text"] == "Which industry?"
            assert found["response"]["ts"] and found["at"] >= after

            # already recorded: answered at once; nothing matching in time: 504
            again = await http.get("/_wait", params={"after": after, "channel": dm})
            assert again.json()["params"]["text"] == "An intro without buttons"
            late = await http.get("/_wait", params={"after": time.time(), "channel": dm,
                                                    "timeout": 0.1})
            assert late.status_code == 504
