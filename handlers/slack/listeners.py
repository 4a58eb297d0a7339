"""Bolt listeners: each acks first, then turns the Slack event into a coach turn (or a modal, or
the Home tab) and answers. They translate; the coach decides.

Dedupe: a message event carries Slack's `event_id` (the same on a retry, `X-Slack-Retry-Num`);
a click is keyed by the question message it was made on, so a double click — or a click on an
old question — is one turn at most. The coach records both in `processed_events`.
"""

from __future__ import annotations

import logging
import re
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from slack_bolt.context.ack.async_ack import AsyncAck
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_sdk.errors import SlackApiError

from bot.commands import SHARE_WORDS
from dialogs.messages import Inbound, Outbound
from handlers.slack import home, modals
from handlers.slack.frontend import PLATFORM, Where, new_request_id
from handlers.slack.render import (
    ANSWER,
    CONTROL,
    EDIT,
    MULTI,
    MULTI_BLOCK,
    MULTI_DONE,
    SELECT,
    answered,
    closed,
    from_slack,
    question_key,
)
from store import conversations as conv

if TYPE_CHECKING:
    from handlers.slack.frontend import SlackFrontEnd

log = logging.getLogger(__name__)

# `/coach pipeline share`: the answer goes to the whole channel instead of only the asker
# an answer button, a control (back, skip, tip…), a pick in a select, Done under checkboxes
# (each with the key of the question it answers after a ".", see render.answer_blocks)
CLICKS = re.compile(f"^(?:{ANSWER}_\\d+|{CONTROL}_\\w+|{SELECT}|{MULTI_DONE})(?:\\.[\\w-]+)?$")
RECORD_KINDS = {"account": "account", "customer": "account", "客户": "account",
                "contact": "contact", "联系人": "contact"}


def register(front: SlackFrontEnd) -> None:
    bolt = front.bolt

    # Bolt tries listeners in the order registered, each match building its arguments anew:
    # the clicks on questions, the most frequent requests, come first and share one matcher.
    @bolt.action(CLICKS)
    async def on_click(ack: AsyncAck, body: dict[str, Any], action: dict[str, Any]) -> None:
        await ack()
        where = _where(body)
        front.after_ack(where, lambda: click(front, body, action, where))

    @bolt.command("/coach")
    async def on_coach(ack: AsyncAck, body: dict[str, Any], request: AsyncBoltRequest) -> None:
        await ack()
        if not await _first_delivery(front, request):
            return  # the same signed request again: answered, and nothing done twice
        where = Where(team=body["team_id"], user=body["user_id"], channel=body["channel_id"],
                      ephemeral=True, response_url=body.get("response_url"),
                      request_id=new_request_id())
        front.after_ack(where, lambda: slash_command(front, body, where))

    @bolt.event("message")
    async def on_message(ack: AsyncAck, body: dict[str, Any], event: dict[str, Any]) -> None:
        await ack()
        # Only what a person types in the DM with the app: edits, deletions, joins and bots'
        # messages arrive as subtypes or with a bot_id.
        if event.get("channel_type") != "im" or event.get("subtype") or event.get("bot_id") \
                or not event.get("user"):
            return
        team = body.get("team_id") or event.get("team") or ""
        where = Where(team=team, user=event["user"], channel=event["channel"],
                      request_id=new_request_id())
        front.remember_dm(where.user, event["channel"])

        async def work() -> None:
            who = await front.profile(where.user)
            inbound = Inbound(PLATFORM, team, where.user, from_slack(event.get("text", "")),
                              user_name=who.name, lang_hint=who.lang,
                              event_id=body.get("event_id"), chat="private",
                              chat_key=event["channel"])
            reply = await front.coach.handle(inbound)
            await front.post(event["channel"], reply.messages, reply.lang)

        front.after_ack(where, work)

    @bolt.event("app_home_opened")
    async def on_home(ack: AsyncAck, body: dict[str, Any], event: dict[str, Any]) -> None:
        await ack()
        if event.get("tab", "home") != "home":
            return
        team = body.get("team_id") or ""
        where = Where(team=team, user=event["user"], request_id=new_request_id())
        front.after_ack(where, lambda: home.publish(front, team, event["user"]))

    @bolt.action(MULTI)
    async def on_tick(ack: AsyncAck) -> None:
        await ack()  # a tick in the checkboxes; the Done button sends the answer

    @bolt.action(home.RESUME)
    async def on_resume(ack: AsyncAck, body: dict[str, Any], action: dict[str, Any]) -> None:
        await ack()
        where = _where(body)
        # Like a click on a question: one resume per button per published Home view (every
        # views.publish gives the view a new hash), so a double click resumes and posts once.
        view = body.get("view") or {}
        event_id = f"home:{view.get('id')}:{view.get('hash')}:{action.get('value')}" \
            if view.get("id") else None

        async def work() -> None:
            dm = await front.dm_channel(where.user)
            inbound = Inbound(PLATFORM, where.team, where.user, f"/resume {action['value']}",
                              event_id=event_id, chat="private", chat_key=dm)
            reply = await front.coach.handle(inbound)
            await front.post(dm, reply.messages, reply.lang)

        front.after_ack(where, work)

    @bolt.action(EDIT)
    async def on_edit(ack: AsyncAck, body: dict[str, Any], action: dict[str, Any]) -> None:
        """Edit on the Home tab or under a record card: the modal, or a private reason why not
        (only the user sees it: ephemeral under an ephemeral card, else in their DM)."""
        await ack()
        where = _where(body)
        container = body.get("container") or {}
        if container.get("is_ephemeral") and where.channel:
            where = replace(where, ephemeral=True)
        elif where.channel and not where.channel.startswith("D"):
            where = replace(where, channel=None)
        kind, _, record_id = str(action.get("value", "")).partition(":")
        front.after_ack(where, lambda: modals.open_by_id(
            front, where, kind, record_id, body["trigger_id"]))

    @bolt.view(re.compile(f"^{modals.CALLBACK_PREFIX}"))
    async def on_submit(ack: AsyncAck, body: dict[str, Any], view: dict[str, Any]) -> None:
        await modals.submit(front, ack, body, view)

    @bolt.error
    async def on_error(error: Exception, body: dict[str, Any]) -> None:
        # Failures inside listener work are handled by front.after_ack; the rest (Bolt's
        # own middleware, a malformed payload), logged with what identifies the request.
        log.error("Slack request failed before reaching a listener (type %s): %r",
                  body.get("type") or body.get("command"), error, exc_info=error)


async def _first_delivery(front: SlackFrontEnd, request: AsyncBoltRequest) -> bool:
    """False for a replay of a slash command Bolt has verified: the same signed body again,
    within Slack's 5-minute window (the signature covers the timestamp and the body, so it
    names the request). Slack never retries a command, so a repeat is never the user's.
    Recorded before the work, in `processed_events`; if the database is not there the work
    runs (and fails politely) as before."""
    signature = next(iter(request.headers.get("x-slack-signature") or ()), "")
    if not signature:  # Socket Mode: no HTTP request to replay
        return True
    try:
        return await front.app.db.run(conv.first_time, PLATFORM, f"command:{signature}",
                                      front.coach.clock())
    except Exception as exc:
        log.warning("could not record a slash command against replays: %s",
                    type(exc).__name__)
        return True


def _where(body: dict[str, Any]) -> Where:
    user = body.get("user") or {}
    team = (body.get("team") or {}).get("id") or user.get("team_id") or ""
    channel = (body.get("channel") or {}).get("id") or (body.get("container") or {}).get(
        "channel_id")
    return Where(team=team, user=user.get("id", ""), channel=channel,
                 response_url=body.get("response_url"), request_id=new_request_id())


# ---- /coach -----------------------------------------------------------------------------------


async def slash_command(front: SlackFrontEnd, body: dict[str, Any], where: Where) -> None:
    """`/coach <command> [args] [share]`: dialogs go to the DM, look-ups answer in place."""
    coach = front.coach
    words = from_slack(body.get("text", "")).split()
    share = len(words) > 1 and words[-1].casefold() in SHARE_WORDS
    if share:
        words = words[:-1]
    if not words:
        words = ["help"]
    head = words[0].lstrip("/").casefold()
    command = coach.commands.get(head)
    control = coach.engine.aliases.get(head)
    channel = body["channel_id"]
    # our DM with them (a DM between two people is a "D" channel too, but not ours)
    in_dm = channel.startswith("D") and channel == await front.dm_channel(where.user)
    who = await front.profile(where.user)
    base: dict[str, Any] = {"platform": PLATFORM, "org_key": where.team,
                            "user_key": where.user,
                            "user_name": who.name or body.get("user_name"),
                            "lang_hint": who.lang}
    if control == "edit" and len(words) >= 3 and words[1].casefold() in RECORD_KINDS:
        await modals.open_by_name(front, where, RECORD_KINDS[words[1].casefold()],
                                  " ".join(words[2:]), body["trigger_id"])
        return
    if command == "channel" and not channel.startswith("D"):
        await bind_channel(front, body, where, base)
        return
    text = "/" + " ".join(words)
    dialog = (command is not None and (command in coach.flow_commands or command == "resume")) \
        or control is not None
    if dialog or in_dm:
        dm = channel if in_dm else await front.dm_channel(where.user)
        reply = await coach.handle(Inbound(**base, text=text, chat="private", chat_key=dm))
        await front.post(dm, reply.messages, reply.lang)
        if not in_dm:
            await front.ephemeral(where, [Outbound(front.text(reply.lang, "slack.opened_in_dm"))],
                                  reply.lang)
        return
    private_chat = channel.startswith("D")  # someone else's DM: not a team channel either
    reply = await coach.handle(Inbound(**base, text=text,
                                       chat="private" if private_chat else "channel",
                                       chat_key=channel, chat_name=body.get("channel_name"),
                                       shared=share))
    if not share:
        await front.ephemeral(where, reply.messages, reply.lang)
        return
    shared = [m for m in reply.messages if not m.private]
    private = [m for m in reply.messages if m.private]
    if shared:
        try:
            await front.post(channel, shared, reply.lang)
        except SlackApiError as exc:
            if exc.response.get("error") not in ("not_in_channel", "channel_not_found") \
                    or not where.response_url:
                raise
            from handlers.slack.render import to_slack

            for message in shared:
                for part in to_slack(message, front.plain(reply.lang)):
                    await front.respond(where.response_url, part.text, part.blocks,
                                        in_channel=True)
    if private:
        note = Outbound(front.text(reply.lang, "slack.private_only"))
        await front.ephemeral(where, [note, *private], reply.lang)


async def bind_channel(front: SlackFrontEnd, body: dict[str, Any], where: Where,
                       base: dict[str, Any]) -> None:
    """`/coach channel`: the bot must be a member to post nudges there; say how to invite it."""
    channel = body["channel_id"]
    name = body.get("channel_name") or channel
    try:
        info = (await front.client.conversations_info(channel=channel))["channel"]
    except SlackApiError as exc:
        if exc.response.get("error") != "channel_not_found":
            raise
        info = {"id": channel, "name": name, "is_member": False}  # a private channel
    if not info.get("is_member"):
        lang = await front.lang_of(where.team, where.user)
        note = Outbound(front.text(lang, "slack.channel.not_member", name=info.get("name", name)))
        await front.ephemeral(where, [note], lang)
        return
    reply = await front.coach.handle(Inbound(**base, text="/channel", chat="channel",
                                             chat_key=channel,
                                             chat_name=info.get("name") or name))
    await front.ephemeral(where, reply.messages, reply.lang)


# ---- clicks -----------------------------------------------------------------------------------


def _clicked(body: dict[str, Any], action: dict[str, Any]) -> tuple[str, str] | None:
    """What a click "types" and the label to show as chosen."""
    kind = action.get("type")
    if kind == "button" and question_key(str(action.get("action_id", "")))[0] == MULTI_DONE:
        state = (body.get("state") or {}).get("values") or {}
        picked = (state.get(MULTI_BLOCK) or {}).get(MULTI) or {}
        options = picked.get("selected_options") or []
        values = [o["value"] for o in options]
        labels = [o["text"]["text"] for o in options]
        return ", ".join(values), ", ".join(labels)
    if kind == "button":
        return str(action["value"]), str(action["text"]["text"])
    if kind == "static_select":
        option = action.get("selected_option") or {}
        return str(option.get("value", "")), str((option.get("text") or {}).get("text", ""))
    return None


async def click(front: SlackFrontEnd, body: dict[str, Any], action: dict[str, Any],
                where: Where) -> None:
    found = _clicked(body, action)
    if found is None:
        return
    value, label = found
    container = body.get("container") or {}
    channel = where.channel or container.get("channel_id")
    ts = container.get("message_ts") or (body.get("message") or {}).get("ts")
    kind, key = question_key(str(action.get("action_id", "")))
    tip = kind == f"{CONTROL}_tip"
    # One answer per question message; a tip may be asked once per message too.
    event_id = f"click:{channel}:{ts}" + (":tip" if tip else "")
    who = await front.profile(where.user)
    if container.get("is_ephemeral") and channel:
        # a choice in a look-up only the user sees (in a channel): answer the same way there
        reply = await front.coach.handle(Inbound(
            PLATFORM, where.team, where.user, value, user_name=who.name, lang_hint=who.lang,
            event_id=event_id, chat="channel", chat_key=channel))
        if reply.messages:
            await front.ephemeral(Where(where.team, where.user, channel, True,
                                        where.response_url, where.request_id),
                                  reply.messages, reply.lang)
        return
    # Answers go to the clicker's own DM, whatever channel the click names: a click on a
    # message in someone else's DM (a forged payload) must not route anything there.
    dm = await front.dm_channel(where.user)
    # the message may be marked answered or closed: one in their DM, or a post in a channel
    own = container.get("type") == "message" and bool(channel) and (
        channel == dm or not str(channel).startswith("D"))
    reply = await front.coach.handle(Inbound(PLATFORM, where.team, where.user, value,
                                             user_name=who.name, lang_hint=who.lang,
                                             event_id=event_id, chat="private", chat_key=dm,
                                             pressed=True, key=key))
    if not reply.messages:
        return  # a double click or a retry: already answered
    message = body.get("message")
    if reply.refused is not None:
        if reply.refused == "closed" and own and message and ts:
            await _mark(front, channel, ts, message, closed(
                message.get("blocks") or [], front.plain(reply.lang)("slack.closed")))
        await front.post(dm, reply.messages, reply.lang)
        return
    if not tip and own and message and ts:
        await _mark(front, channel, ts, message, answered(message.get("blocks") or [], label))
    await front.post(dm, reply.messages, reply.lang)


async def _mark(front: SlackFrontEnd, channel: str | None, ts: str, message: dict[str, Any],
                blocks: list[dict[str, Any]]) -> None:
    """Show a question message answered or closed (its buttons gone)."""
    if channel is None:
        return
    try:
        await front.client.chat_update(channel=channel, ts=ts, text=message.get("text") or " ",
                                       blocks=blocks)
    except SlackApiError as exc:  # the old question was deleted: the answer still counts
        log.warning("could not mark the question %s: %s", ts, exc.response.get("error"))
