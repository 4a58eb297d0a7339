"""Platform-neutral messages: what the front ends hand to the core and what they get back.

Outbound text is a tiny HTML subset (`<b>`, `<i>`, `<code>`) with every piece of user text
escaped. That is Telegram's HTML as is; Slack's mrkdwn needs the same `&`, `<`, `>` entities
and `*bold*`; the console strips the tags and unescapes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime


@dataclass(frozen=True)
class Inbound:
    """One thing a user did: typed a line or pressed a button (whose value arrives as `text`)."""

    platform: str
    org_key: str
    user_key: str
    text: str
    user_name: str | None = None
    lang_hint: str | None = None
    event_id: str | None = None
    # where it was typed: "private" (a DM, the console) or "channel" (a team channel or group),
    # and that chat's platform id; commands that bind or post to a channel read them
    chat: str = "private"
    chat_key: str | None = None
    chat_name: str | None = None
    # a press on a button of a question (not a typed line): it answers a paused dialog too
    pressed: bool = False
    # typed in a channel with `share` at the end: the answer is for everyone there (without
    # contact details); otherwise a channel's answer goes to the asker alone
    shared: bool = False
    # the language of this session only (`salescoach chat --lang`), over the user's stored
    # preference, which it does not change
    session_lang: str | None = None
    # with `pressed`: the key of the question the button was shown with (`Outbound.key`); the
    # coach takes the press as an answer only while that very question is open
    key: str | None = None


@dataclass(frozen=True)
class Option:
    """A choice offered with a question: `value` is what answering it sends back."""

    value: str
    label: str


@dataclass(frozen=True)
class Attachment:
    """A file that goes with a message: a generated proposal (.docx), a chart (.png)."""

    filename: str
    data: bytes
    mime: str
    title: str = ""


@dataclass(frozen=True)
class Mention:
    """Someone a message names as `@name` (escaped, in the text) whom a front end that can
    ping replaces with its own mention: `user_key` is their id on `platform`."""

    platform: str
    user_key: str
    name: str


@dataclass(frozen=True)
class Outbound:
    """One message to show. `options` are the answers (numbered in the console, buttons
    elsewhere); `controls` are back/skip/tip/cancel for front ends with buttons.

    `private` marks a message that carries personal data (contacts' personal notes, someone's
    receivables): a front end shows it only to the asker (DM or ephemeral), never in a channel.
    `mentions` are the people to ping (see `Mention`); `record` is the record a card shows,
    `(kind, id)` with kind "account" or "contact", so a front end can offer to edit it.
    `key` names the question a dialog asks (whose user, which dialog, where it stands): a front
    end puts it into the message's buttons and hands it back with a press (`Inbound.key`).
    """

    text: str
    kind: str = "say"
    options: tuple[Option, ...] = ()
    multi: bool = False
    controls: tuple[Option, ...] = ()
    progress: tuple[int, int] | None = None
    attachments: tuple[Attachment, ...] = ()
    private: bool = False
    mentions: tuple[Mention, ...] = ()
    record: tuple[str, str] | None = None
    key: str | None = None


@dataclass(frozen=True)
class TurnContext:
    """Everything a turn may depend on besides the state and the input: injected, never read."""

    now: datetime
    lang: str
    user_id: str
    candidates: tuple[tuple[str, str], ...] = ()
    default_currency: str = "CNY"
    extras: dict[str, str] = field(default_factory=dict)
    # what a "which one?" question offers to tap: suggest(kind, scope id, opportunity id)
    # -> (id, name) pairs, the same list when asked and when answered ("1" is the first);
    # the opportunity is given for contacts when no account is bound. None: nothing offered
    suggest: Callable[[str, str | None, str | None], Sequence[tuple[str, str]]] | None = None

    @property
    def today(self) -> date:
        """The user's calendar day (`now` is already in the user's time zone)."""
        return self.now.date()
