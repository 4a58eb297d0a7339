"""slack/manifest.yml: valid YAML, exactly the scopes the code needs, the events it handles."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from bot.delivery import Target
from dialogs.messages import Attachment, Outbound
from handlers.slack.scopes import BOT_SCOPES, EVENT_SCOPES, METHOD_SCOPES
from tests.fakes.slack_api import TEAM_ID
from tests.handlers.slack.harness import SlackClient

MANIFEST = Path(__file__).resolve().parents[3] / "slack" / "manifest.yml"


def _manifest() -> dict[str, Any]:
    data = yaml.safe_load(MANIFEST.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def test_manifest_asks_for_exactly_the_scopes_the_code_uses() -> None:
    scopes = _manifest()["oauth_config"]["scopes"]["bot"]
    assert len(scopes) == len(set(scopes))
    assert set(scopes) == BOT_SCOPES
    assert "user" not in _manifest()["oauth_config"]["scopes"]


def test_manifest_declares_the_command_events_interactivity_and_home() -> None:
    m = _manifest()
    [command] = m["features"]["slash_commands"]
    assert command["command"] == "/coach"
    assert command["url"].endswith("/slack/events")
    settings = m["settings"]
    assert set(settings["event_subscriptions"]["bot_events"]) == set(EVENT_SCOPES)
    assert settings["event_subscriptions"]["request_url"].endswith("/slack/events")
    assert settings["interactivity"]["is_enabled"] is True
    assert settings["interactivity"]["request_url"].endswith("/slack/events")
    assert m["features"]["app_home"]["home_tab_enabled"] is True
    assert m["features"]["app_home"]["messages_tab_enabled"] is True
    assert m["display_information"]["name"]


async def test_every_web_api_method_the_app_calls_has_its_scope_listed(
        slack: SlackClient) -> None:
    rep = slack.user()
    await rep.command("intake")
    await rep.say("Daqing Oilfield Company")
    await rep.click(rep.last_question(), value="oil_gas")
    await rep.command("channel")
    slack.fake.add_channel("C0RANDOM", "random", is_member=False)
    await rep.command("channel", channel="C0RANDOM")
    await rep.open_home()
    await rep.command("edit account Daqing Oilfield Company")
    [opened] = slack.fake.calls("views.open")
    await rep.submit(opened.params["view"], {"postcode": "163000"})
    await slack.front.deliver(Target(TEAM_ID, "user", "U0OTHER"), [
        Outbound("file", attachments=(Attachment("a.png", b"png", "image/png"),))])
    called = {c.method for c in slack.fake.calls()} - {"upload", "response_url"}
    assert called <= set(METHOD_SCOPES), called - set(METHOD_SCOPES)
    assert {"chat.postMessage", "chat.update", "chat.postEphemeral", "conversations.open",
            "conversations.info", "views.publish", "views.open",
            "files.completeUploadExternal"} <= called
