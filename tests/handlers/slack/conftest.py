"""Fixtures: a fake Slack Web API server, and the app of `salescoach serve` wired to it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from store.db import Database
from tests.fakes.slack_api import FakeSlackAPI
from tests.handlers.slack.harness import FakeClock, SlackClient, make_client


@pytest.fixture
def fake_slack() -> Iterator[FakeSlackAPI]:
    with FakeSlackAPI() as fake:
        fake.add_channel("C0SALES", "sales", is_member=True)
        yield fake


@pytest.fixture
async def slack(fake_slack: FakeSlackAPI, db: Database, database_url: str
                ) -> AsyncIterator[SlackClient]:
    """The ASGI app with the Slack front end, on the `db` fixture's database, a fake clock."""
    client, http = await make_client(fake_slack, database_url, clock=FakeClock())
    try:
        yield client
    finally:
        await client.front.stop()
        await http.aclose()
        await client.app.close()
