"""Neutral messages as Slack messages (mrkdwn text + Block Kit), and Slack text back to plain.

The core's markup is a tiny HTML subset with user text already escaped (`&amp; &lt; &gt;`).
Slack's mrkdwn needs exactly those three entities, so they are kept: a rep who types
`<!channel>` is shown `&lt;!channel&gt;`, which Slack displays as text and never as a ping.
Other entities (`&#39;`, `&#34;`) become their characters, tags become mrkdwn markers.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from dialogs.messages import Mention, Option, Outbound

# Slack's limits (https://docs.slack.dev/reference/block-kit): a section's text, a button's
# label, an option's text and value; buttons per actions block; checkbox options.
SECTION_LIMIT = 3000
LABEL_LIMIT = 75
VALUE_LIMIT = 2000
MAX_BUTTONS = 5          # more single-choice options than this: a select menu
MAX_CHECKBOXES = 10      # more multi-choice options than this: a multi-select menu
MAX_SELECT_OPTIONS = 100
MAX_PARTS = 8            # messages one Outbound may become; beyond, truncated with a note

ANSWER = "sc_answer"     # + "_<n>": action ids must be unique inside a block
CONTROL = "sc_control"   # + "_<word>"
SELECT = "sc_select"
MULTI = "sc_multi"
MULTI_DONE = "sc_multi_done"
ANSWER_BLOCK = "sc_options"
CONTROL_BLOCK = "sc_controls"
MULTI_BLOCK = "sc_multi_block"
KEY_SEP = "."            # action id + "." + the key of the question it answers (Outbound.key)
EDIT = "sc_edit"         # value "<kind>:<id>": opens the record's edit modal (card, Home)
RECORD_BLOCK = "sc_record"

_TAG = re.compile(r"<(/?)(b|i|code)>")
_MARK = {"b": "*", "i": "_", "code": "`"}


def escape(text: str) -> str:
    """Plain text made safe for mrkdwn: only `&`, `<`, `>` are special."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _plain_piece(piece: str) -> str:
    return escape(html.unescape(piece))


def to_mrkdwn(markup: str) -> str:
    """The neutral markup as Slack mrkdwn.

    A marker glued to a letter (CJK text has no spaces) is not recognised by Slack, so a
    zero-width space separates them.
    """
    # as a plain str: a Markup's methods escape their arguments on every call (4x slower)
    markup = str(markup)
    out: list[str] = []
    pos = 0
    for match in _TAG.finditer(markup):
        out.append(_plain_piece(markup[pos:match.start()]))
        closing, name = match.groups()
        mark = _MARK[name]
        before = out[-1][-1:] if out and out[-1] else ""
        nxt = markup[match.end():match.end() + 1]
        if not closing and before and before.isalnum():
            mark = "\u200b" + mark
        if closing and nxt and nxt.isalnum():
            mark = mark + "\u200b"
        out.append(mark)
        pos = match.end()
    out.append(_plain_piece(markup[pos:]))
    return "".join(out)


_USER_ID = re.compile(r"[A-Za-z0-9_.-]+")


def with_mentions(text: str, mentions: Sequence[Mention]) -> str:
    """mrkdwn `text` with each Slack mention's `@name` (escaped, as `to_mrkdwn` leaves it)
    made a ping, `<@U…>`. Mentions for other platforms stay names."""
    ids = {escape(m.name): m.user_key for m in mentions
           if m.platform == "slack" and m.name and _USER_ID.fullmatch(m.user_key)}
    if not ids:
        return text
    names = sorted(ids, key=len, reverse=True)  # "@Li Lei" before "@Li"
    pattern = re.compile("@(" + "|".join(map(re.escape, names)) + r")(?!\w)")
    return pattern.sub(lambda match: f"<@{ids[match.group(1)]}>", text)


def plain_label(markup: str, limit: int = LABEL_LIMIT) -> str:
    """An option label as `plain_text` (Slack shows it verbatim): tags dropped, unescaped."""
    text = html.unescape(_TAG.sub("", markup)).strip() or "…"
    return text if len(text) <= limit else text[:limit - 1] + "…"


# ---- Slack text -> what the user typed -------------------------------------------------------

_SLACK_REF = re.compile(r"<([^<>]*)>")


def _ref(match: re.Match[str]) -> str:
    inner = match.group(1)
    target, _, label = inner.partition("|")
    if target.startswith(("@", "#")):
        return (target[0] + label) if label else target
    if target.startswith("!"):
        return "@" + (label or target[1:].split("^")[0])
    return label or target


def from_slack(text: str) -> str:
    """A message or slash-command text as the user typed it: Slack escapes `& < >` and wraps
    mentions and links in `<…>`; mentions become `@name`, links their label or URL."""
    return html.unescape(_SLACK_REF.sub(_ref, text or "")).strip()


# ---- splitting --------------------------------------------------------------------------------


def split_text(text: str, limit: int = SECTION_LIMIT) -> list[str]:
    """`text` in pieces of at most `limit` characters, cut at a line break, else a space, never
    inside an entity such as `&amp;`."""
    parts: list[str] = []
    rest = text
    while len(rest) > limit:
        cut = rest.rfind("\n", 0, limit + 1)
        if cut < limit // 2:
            cut = rest.rfind(" ", 0, limit + 1)
        if cut < limit // 2:
            cut = limit
            amp = rest.rfind("&", cut - 5, cut)
            if amp != -1 and ";" not in rest[amp:cut]:
                cut = amp
        parts.append(rest[:cut].rstrip())
        rest = rest[cut:].lstrip("\n ")
    if rest or not parts:
        parts.append(rest)
    return parts


# ---- Outbound -> Slack messages ---------------------------------------------------------------


@dataclass(frozen=True)
class SlackMessage:
    """What `chat.postMessage` gets: fallback `text` (notifications) and `blocks`."""

    text: str
    blocks: list[dict[str, Any]]


def _plain(text: str) -> dict[str, Any]:
    return {"type": "plain_text", "text": text, "emoji": True}


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def _option(option: Option) -> dict[str, Any]:
    return {"text": _plain(plain_label(option.label)), "value": option.value[:VALUE_LIMIT]}


def _keyed(action_id: str, key: str | None) -> str:
    return f"{action_id}{KEY_SEP}{key}" if key else action_id


def question_key(action_id: str) -> tuple[str, str | None]:
    """An action id as (its kind, the key of the question it answers or None)."""
    kind, _, key = action_id.partition(KEY_SEP)
    return kind, key or None


def _button(action_id: str, option: Option) -> dict[str, Any]:
    return {"type": "button", "action_id": action_id, "text": _plain(plain_label(option.label)),
            "value": option.value[:VALUE_LIMIT]}


def answer_blocks(message: Outbound, t: Callable[[str], str]) -> list[dict[str, Any]]:
    """The interactive part of a question: buttons, a select, or checkboxes + Done; controls."""
    blocks: list[dict[str, Any]] = []
    options = message.options
    key = message.key
    if options and message.multi:
        element: dict[str, Any]
        if len(options) <= MAX_CHECKBOXES:
            element = {"type": "checkboxes", "action_id": MULTI,
                       "options": [_option(o) for o in options]}
        else:
            element = {"type": "multi_static_select", "action_id": MULTI,
                       "placeholder": _plain(t("slack.choose_many")),
                       "options": [_option(o) for o in options[:MAX_SELECT_OPTIONS]]}
        blocks.append({"type": "actions", "block_id": MULTI_BLOCK, "elements": [element]})
        blocks.append({"type": "actions", "block_id": ANSWER_BLOCK, "elements": [
            {"type": "button", "action_id": _keyed(MULTI_DONE, key), "style": "primary",
             "text": _plain(t("slack.done")), "value": "done"}]})
    elif options and len(options) <= MAX_BUTTONS:
        blocks.append({"type": "actions", "block_id": ANSWER_BLOCK, "elements": [
            _button(_keyed(f"{ANSWER}_{n}", key), o) for n, o in enumerate(options)]})
    elif options:
        blocks.append({"type": "actions", "block_id": ANSWER_BLOCK, "elements": [
            {"type": "static_select", "action_id": _keyed(SELECT, key),
             "placeholder": _plain(t("slack.choose")),
             "options": [_option(o) for o in options[:MAX_SELECT_OPTIONS]]}]})
    if message.controls:
        blocks.append({"type": "actions", "block_id": CONTROL_BLOCK, "elements": [
            _button(_keyed(f"{CONTROL}_{c.value}", key), c) for c in message.controls[:25]]})
    if message.record is not None:  # a card of an account or contact: offer to edit it
        kind, record_id = message.record
        blocks.append({"type": "actions", "block_id": RECORD_BLOCK, "elements": [
            {"type": "button", "action_id": EDIT, "text": _plain(t("slack.card.edit")),
             "value": f"{kind}:{record_id}"}]})
    return blocks


def to_slack(message: Outbound, t: Callable[..., str]) -> list[SlackMessage]:
    """One neutral message as one or more Slack messages (long text is split; past MAX_PARTS
    it is cut with a note saying so). Buttons go with the last part."""
    parts = split_text(with_mentions(to_mrkdwn(message.text), message.mentions))
    if len(parts) > MAX_PARTS:
        left_out = sum(len(p) for p in parts[MAX_PARTS:])
        parts = parts[:MAX_PARTS]
        parts[-1] = parts[-1][:SECTION_LIMIT - 200] + "\n" + \
            f"_{escape(t('slack.truncated', count=left_out))}_"
    out = [SlackMessage(text=part, blocks=[_section(part)]) for part in parts if part]
    if not out:
        out = [SlackMessage(text=" ", blocks=[])]
    extra = answer_blocks(message, t)
    if extra:
        last = out[-1]
        out[-1] = SlackMessage(text=last.text, blocks=[*last.blocks, *extra])
    return out


GROUP_SECTIONS = 10        # sections one grouped Slack message may hold
GROUP_CHARS = 12_000


def group(messages: Sequence[SlackMessage]) -> list[SlackMessage]:
    """Consecutive messages as few Slack messages: Slack allows about one post per second in
    a channel, and a turn often says two things (an intro and a question). A message with
    buttons ends a group, so every question keeps its own buttons."""
    out: list[SlackMessage] = []
    for message in messages:
        if out:
            last = out[-1]
            interactive = any(b.get("type") == "actions" for b in last.blocks)
            sections = len(last.blocks) + len(message.blocks)
            size = len(last.text) + len(message.text)
            if not interactive and last.blocks and message.blocks \
                    and sections <= GROUP_SECTIONS + 3 and size <= GROUP_CHARS:
                out[-1] = SlackMessage(text=f"{last.text}\n\n{message.text}",
                                       blocks=[*last.blocks, *message.blocks])
                continue
        out.append(message)
    return out


def answered(blocks: Sequence[dict[str, Any]], chosen: str) -> list[dict[str, Any]]:
    """A question message after a click: its text, no buttons, and what was chosen."""
    return _without_buttons(blocks, f"✓ *{escape(chosen)}*")


def closed(blocks: Sequence[dict[str, Any]], note: str) -> list[dict[str, Any]]:
    """A question message whose question is closed: its text, no buttons, and a plain `note`
    saying so."""
    return _without_buttons(blocks, f"_{escape(note)}_")


def _without_buttons(blocks: Sequence[dict[str, Any]], mark: str) -> list[dict[str, Any]]:
    kept = [b for b in blocks if b.get("type") not in ("actions", "input")]
    kept.append({"type": "context", "elements": [{"type": "mrkdwn", "text": mark}]})
    return kept
