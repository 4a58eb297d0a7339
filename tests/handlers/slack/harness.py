"""Drive the Slack front end like Slack does: signed HTTP requests with the real payload shapes
into the ASGI app of `salescoach serve`; the app's Web API calls go to the fake Slack server."""

from __future__ import annotations

import hashlib
import hmac
import html
import json
import re
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx

from bot.app import App, build_app
from bot.settings import Settings
from bot.web import create_web_app
from handlers.slack import SlackFrontEnd, build_frontend
from tests.conversation_checks import FakeClock as FakeClock  # re-exported for the Slack tests
from tests.fakes.slack_api import BOT_ID, BOT_USER_ID, TEAM_ID, Call, FakeSlackAPI

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
TOKEN = "xoxb-test-token"
CHANNEL = "C0SALES"
REP = "U0REP1"


def sign(body: bytes, timestamp: int, secret: str = SECRET) -> dict[str, str]:
    """Slack's request signature: v0=HMAC-SHA256(secret, "v0:{ts}:{body}")."""
    base = b"v0:" + str(timestamp).encode() + b":" + body
    digest = hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": str(timestamp), "X-Slack-Signature": f"v0={digest}"}


def settings_for(fake: FakeSlackAPI, database_url: str, **extra: Any) -> Settings:
    values = {"DATABASE_URL": database_url, "SLACK_BOT_TOKEN": TOKEN,
              "SLACK_SIGNING_SECRET": SECRET, "SLACK_API_URL": fake.api_url,
              "SALESCOACH_AUTO_MIGRATE": False, **extra}
    return Settings(**values)


def plain(mrkdwn: str) -> str:
    """What a Slack message shows, roughly: markers dropped, entities decoded."""
    return html.unescape(re.sub(r"[*_`\u200b]", "", mrkdwn))


@dataclass
class SlackUser:
    """One person in the workspace, talking to the app; `turns` is what the app answered."""

    slack: SlackClient
    user: str = REP
    name: str = "liu"
    team: str = TEAM_ID

    @property
    def dm(self) -> str:
        return "D" + self.user.lstrip("U")[:10]

    async def command(self, text: str, *, channel: str = CHANNEL, channel_name: str = "sales",
                      **headers: str) -> httpx.Response:
        return await self.slack.command(text, user=self.user, user_name=self.name,
                                        team=self.team, channel=channel,
                                        channel_name=channel_name, headers=headers)

    async def say(self, text: str, *, event_id: str | None = None,
                  retry: int | None = None) -> httpx.Response:
        return await self.slack.dm(text, user=self.user, team=self.team, channel=self.dm,
                                   event_id=event_id, retry=retry)

    def last_question(self) -> Call:
        """The last message the app posted in the DM that has buttons or a select."""
        for call in reversed(self.slack.fake.calls("chat.postMessage")):
            if call.params.get("channel") == self.dm and call.ok and any(
                    b.get("type") == "actions" for b in call.params.get("blocks") or []):
                return call
        raise AssertionError("no question with buttons in the DM")

    async def click(self, post: Call, *, value: str | None = None, label: str | None = None,
                    action_prefix: str = "sc_") -> httpx.Response:
        """Press a button (by value or label), or pick from the select, on a posted message."""
        blocks = post.params.get("blocks") or []
        for block in blocks:
            if block.get("type") != "actions":
                continue
            for element in block["elements"]:
                if not element["action_id"].startswith(action_prefix):
                    continue
                if element["type"] == "button" and (
                        element.get("value") == value or element["text"]["text"] == label):
                    return await self.slack.action(self, post, block, element, element)
                if element["type"] == "static_select":
                    for option in element["options"]:
                        if option["value"] == value or option["text"]["text"] == label:
                            chosen = {**element, "selected_option": option}
                            return await self.slack.action(self, post, block, element, chosen)
        raise AssertionError(f"no button {value or label!r} in {blocks}")

    async def tick_and_done(self, post: Call, values: list[str]) -> httpx.Response:
        """Tick checkboxes (or a multi-select) and press Done."""
        blocks = post.params["blocks"]
        multi = next(b for b in blocks if b.get("block_id") == "sc_multi_block")
        element = multi["elements"][0]
        picked = [o for o in element["options"] if o["value"] in values]
        kind = "checkboxes" if element["type"] == "checkboxes" else "multi_static_select"
        state = {"sc_multi_block": {"sc_multi": {"type": kind, "selected_options": picked}}}
        done_block = next(b for b in blocks if b["type"] == "actions" and any(
            e["action_id"].split(".")[0] == "sc_multi_done" for e in b["elements"]))
        done = next(e for e in done_block["elements"]
                    if e["action_id"].split(".")[0] == "sc_multi_done")
        return await self.slack.action(self, post, done_block, done, done, state=state)

    async def open_home(self) -> httpx.Response:
        return await self.slack.event(
            {"type": "app_home_opened", "user": self.user, "channel": self.dm, "tab": "home",
             "event_ts": f"{time.time():.6f}"}, team=self.team)

    async def submit(self, view: dict[str, Any], values: dict[str, Any]) -> httpx.Response:
        """Submit a modal (as views.open got it) with `values`: field -> text / option value /
        list of option values."""
        state: dict[str, Any] = {}
        for block in view["blocks"]:
            if block["type"] != "input":
                continue
            element = block["element"]
            name = block["block_id"]
            if element["type"] == "plain_text_input":
                current = values.get(name, element.get("initial_value"))
                state[name] = {"v": {"type": "plain_text_input", "value": current}}
            elif element["type"] == "static_select":
                chosen = values.get(name, (element.get("initial_option") or {}).get("value"))
                option = next((o for o in element["options"] if o["value"] == chosen), None)
                if option is None and chosen is not None:  # a forged value
                    option = {"text": {"type": "plain_text", "text": chosen}, "value": chosen}
                state[name] = {"v": {"type": "static_select", "selected_option": option}}
            else:
                chosen_all = values.get(name, [o["value"] for o in
                                               element.get("initial_options") or []])
                options = [o for o in element["options"] if o["value"] in chosen_all]
                state[name] = {"v": {"type": "multi_static_select",
                                     "selected_options": options}}
        payload = {
            "type": "view_submission", "team": {"id": self.team, "domain": "fake"},
            "user": {"id": self.user, "username": self.name, "name": self.name,
                     "team_id": self.team},
            "api_app_id": "A0FAKE", "token": "legacy", "trigger_id": self.slack._trigger(),
            "view": {**view, "id": "V0MODAL", "team_id": self.team,
                     "state": {"values": state}, "hash": "156772938.1827394",
                     "root_view_id": "V0MODAL", "app_id": "A0FAKE", "bot_id": BOT_ID},
            "response_urls": [], "is_enterprise_install": False, "enterprise": None,
        }
        return await self.slack.interactive(payload)


@dataclass
class SlackClient:
    """Sends what Slack would send, signed, to the ASGI app; waits for the listeners."""

    http: httpx.AsyncClient
    front: SlackFrontEnd
    fake: FakeSlackAPI
    app: App
    clock: Callable[[], float] = time.time
    secret: str = SECRET
    events: int = 0
    triggers: int = 0
    sent: list[httpx.Response] = field(default_factory=list)

    def user(self, user: str = REP, name: str = "liu", team: str = TEAM_ID,
             locale: str = "en-US") -> SlackUser:
        """A person in the workspace (known to the fake's users.info)."""
        if user not in self.fake.users:
            self.fake.add_user(user, name, locale=locale)
        return SlackUser(self, user, name, team)

    async def send(self, body: bytes, content_type: str, *, timestamp: int | None = None,
                   signature: str | None = None,
                   headers: dict[str, str] | None = None) -> httpx.Response:
        ts = int(self.clock()) if timestamp is None else timestamp
        signed = sign(body, ts, self.secret)
        if signature is not None:
            signed["X-Slack-Signature"] = signature
        response = await self.http.post("/slack/events", content=body, headers={
            "Content-Type": content_type, **signed, **(headers or {})})
        self.sent.append(response)
        await self.front.settle()
        return response

    def _trigger(self) -> str:
        self.triggers += 1
        return f"{self.triggers}.1234567890.abcdef{self.triggers:04d}"

    async def command(self, text: str, *, user: str, user_name: str, team: str, channel: str,
                      channel_name: str, headers: dict[str, str] | None = None,
                      **send: Any) -> httpx.Response:
        form = {
            "token": "legacy", "team_id": team, "team_domain": "fake", "channel_id": channel,
            "channel_name": "directmessage" if channel.startswith("D") else channel_name,
            "user_id": user, "user_name": user_name, "command": "/coach",
            "text": html.escape(text, quote=False),  # Slack escapes & < > as in messages
            "api_app_id": "A0FAKE", "is_enterprise_install": "false",
            "response_url": self.fake.response_url(f"cmd{self.triggers + 1}"),
            "trigger_id": self._trigger(),
        }
        body = urllib.parse.urlencode(form).encode()
        return await self.send(body, "application/x-www-form-urlencoded", headers=headers,
                               **send)

    async def event(self, event: dict[str, Any], *, team: str, event_id: str | None = None,
                    retry: int | None = None, **send: Any) -> httpx.Response:
        self.events += 1
        envelope = {
            "token": "legacy", "team_id": team, "context_team_id": team,
            "api_app_id": "A0FAKE", "event": event, "type": "event_callback",
            "event_id": event_id or f"Ev{self.events:08d}",
            "event_time": int(time.time()),
            "authorizations": [{"enterprise_id": None, "team_id": team,
                                "user_id": BOT_USER_ID, "is_bot": True,
                                "is_enterprise_install": False}],
            "is_ext_shared_channel": False,
        }
        headers = dict(send.pop("headers", None) or {})
        if retry is not None:
            headers.update({"X-Slack-Retry-Num": str(retry),
                            "X-Slack-Retry-Reason": "http_timeout"})
        return await self.send(json.dumps(envelope).encode(), "application/json",
                               headers=headers, **send)

    async def dm(self, text: str, *, user: str, team: str, channel: str,
                 event_id: str | None = None, retry: int | None = None) -> httpx.Response:
        ts = f"{time.time():.6f}"
        event = {"client_msg_id": f"m-{self.events}", "type": "message",
                 "text": html.escape(text, quote=False), "user": user, "ts": ts,
                 "team": team, "channel": channel, "event_ts": ts, "channel_type": "im",
                 "blocks": [{"type": "rich_text", "block_id": "b1", "elements": [
                     {"type": "rich_text_section",
                      "elements": [{"type": "text", "text": text}]}]}]}
        return await self.event(event, team=team, event_id=event_id, retry=retry)

    async def interactive(self, payload: dict[str, Any], **send: Any) -> httpx.Response:
        body = urllib.parse.urlencode({"payload": json.dumps(payload)}).encode()
        return await self.send(body, "application/x-www-form-urlencoded", **send)

    async def action(self, who: SlackUser, post: Call, block: dict[str, Any],
                     element: dict[str, Any], action: dict[str, Any],
                     state: dict[str, Any] | None = None,
                     ephemeral: bool = False) -> httpx.Response:
        channel = post.params["channel"]
        ts = self._posted_ts(post)
        message = {"type": "message", "subtype": "bot_message", "text": post.params.get("text"),
                   "ts": ts, "bot_id": BOT_ID, "user": BOT_USER_ID,
                   "blocks": post.params.get("blocks")}
        act = {"action_id": element["action_id"], "block_id": block["block_id"],
               "type": element["type"], "action_ts": f"{time.time():.6f}"}
        if element["type"] == "button":
            act.update(text=element["text"], value=element.get("value"))
        else:
            act.update(selected_option=action["selected_option"],
                       placeholder=element.get("placeholder"))
        payload = {
            "type": "block_actions",
            "user": {"id": who.user, "username": who.name, "name": who.name,
                     "team_id": who.team},
            "api_app_id": "A0FAKE", "token": "legacy",
            "container": {"type": "message", "message_ts": ts, "channel_id": channel,
                          "is_ephemeral": ephemeral},
            "trigger_id": self._trigger(), "team": {"id": who.team, "domain": "fake"},
            "enterprise": None, "is_enterprise_install": False,
            "channel": {"id": channel,
                        "name": "directmessage" if channel.startswith("D") else "sales"},
            **({} if ephemeral else {"message": message}),
            "state": {"values": state or {}},
            "response_url": self.fake.response_url(f"act{self.triggers}"),
            "actions": [act],
        }
        return await self.interactive(payload)

    async def view_action(self, who: SlackUser, view: dict[str, Any],
                          element: dict[str, Any]) -> httpx.Response:
        """Press a button on the Home tab (or in a modal): the container is the view."""
        view_id = view.get("id", "V0HOME")
        # the hash Slack gave the view when it was published (a new one on every publish)
        published = [c.response.get("view") or {} for c in self.fake.calls()
                     if c.method in ("views.publish", "views.update") and c.ok
                     and c.params.get("view") == view]
        view_hash = published[-1].get("hash") if published else None
        payload = {
            "type": "block_actions",
            "user": {"id": who.user, "username": who.name, "name": who.name,
                     "team_id": who.team},
            "api_app_id": "A0FAKE", "token": "legacy",
            "container": {"type": "view", "view_id": view_id},
            "trigger_id": self._trigger(), "team": {"id": who.team, "domain": "fake"},
            "enterprise": None, "is_enterprise_install": False,
            "view": {**view, "id": view_id, "hash": view_hash, "state": {"values": {}}},
            "actions": [{"action_id": element["action_id"], "block_id": "b" + view_id,
                         "type": element["type"], "text": element.get("text"),
                         "value": element.get("value"), "action_ts": f"{time.time():.6f}"}],
        }
        return await self.interactive(payload)

    def _posted_ts(self, post: Call) -> str:
        return str(post.response.get("ts") or post.response["message_ts"])  # ephemeral: message_ts

    def seen_by(self, who: SlackUser) -> list[str]:
        """Plain texts of everything the app showed `who`: DM posts and ephemeral notes."""
        return [plain(c.params.get("text", "")) for c in self.fake.calls()
                if c.ok and ((c.method == "chat.postMessage" and c.params.get("channel") == who.dm)
                             or (c.method == "chat.postEphemeral"
                                 and c.params.get("user") == who.user))]

    def dm_texts(self, dm: str, since: int = 0) -> list[str]:
        """Plain texts of what the app posted in `dm` (from call number `since` on)."""
        return [plain(c.params.get("text", "")) for c in self.fake.calls()[since:]
                if c.method == "chat.postMessage" and c.ok and c.params.get("channel") == dm]


async def make_client(fake: FakeSlackAPI, database_url: str,
                      clock: Callable[[], datetime] | None = None,
                      **settings: Any) -> tuple[SlackClient, httpx.AsyncClient]:
    app = build_app(settings_for(fake, database_url, **settings), clock=clock)
    front = build_frontend(app)
    web = create_web_app(db=app.db, metrics=app.metrics, extra_routes=front.routes())
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=web), base_url="http://salescoach")
    return SlackClient(http=http, front=front, fake=fake, app=app), http
