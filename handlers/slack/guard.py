"""What a request to `POST /slack/events` must look like before Bolt sees it.

Bolt parses the body and reads the timestamp header itself, and a body it cannot parse (or a
payload missing what the listeners read) ended as a 500. This checks the same body the same
way (with Bolt's own parser), so whatever passes is parsed by Bolt as it was here."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from slack_bolt.request.internals import parse_body

from handlers.guard import Malformed, too_deep

TIMESTAMP = re.compile(r"[0-9]{1,12}")
# interactive payloads: who clicked or submitted is what every listener reads first
INTERACTIVE = frozenset({"block_actions", "block_suggestion", "view_submission", "view_closed",
                         "shortcut", "message_action", "interactive_message",
                         "dialog_submission"})
# parts of a payload the listeners read as objects, when present
OBJECTS = ("user", "team", "channel", "container", "message", "view", "state", "event")


def check(headers: Mapping[str, str], raw: bytes) -> dict[str, Any]:
    """The parsed body of a request fit for Bolt, or Malformed saying why not."""
    timestamp = headers.get("x-slack-request-timestamp")
    if timestamp is not None and not TIMESTAMP.fullmatch(timestamp):
        raise Malformed("the request timestamp is not a number")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise Malformed("the body is not UTF-8") from None
    try:
        body = parse_body(text, headers.get("content-type"))
    except RecursionError:
        raise Malformed("the body is nested too deeply") from None
    except ValueError:
        raise Malformed("the body is not JSON") from None
    if not isinstance(body, dict):
        raise Malformed("the body is not an object")
    if too_deep(body):
        raise Malformed("the body is nested too deeply")
    if "command" in body:
        for field in ("command", "team_id", "user_id", "channel_id"):
            if not _text(body.get(field)):
                raise Malformed(f"the slash command has no {field}")
        return body
    kind = body.get("type")
    if not _text(kind):
        if body.get("ssl_check"):
            return body
        raise Malformed("the body is not a Slack request")
    for name in OBJECTS:
        if body.get(name) is not None and not isinstance(body[name], dict):
            raise Malformed(f"{name} is not an object")
    if kind in INTERACTIVE and not _text((body.get("user") or {}).get("id")):
        raise Malformed(f"the {kind} payload has no user")
    if kind == "block_actions":
        actions = body.get("actions")
        if not isinstance(actions, list) or not actions or not all(
                isinstance(a, dict) and _text(a.get("action_id")) for a in actions):
            raise Malformed("the block_actions payload has no actions")
    if kind in ("view_submission", "view_closed") and not isinstance(body.get("view"), dict):
        raise Malformed(f"the {kind} payload has no view")
    if kind == "event_callback" and not _text((body.get("event") or {}).get("type")):
        raise Malformed("the event has no type")
    return body


def _text(value: Any) -> bool:
    return isinstance(value, str) and bool(value)

