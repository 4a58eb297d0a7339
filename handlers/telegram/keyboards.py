"""The store side of inline keyboards: what a button stands for, and whether it still counts.

A button's `callback_data` holds only a keyboard's short key and an index (64 bytes is too
little for an answer in general); the row here holds the values. A dialog's question keyboard
is closed when it is answered or when a newer question is asked in that chat, so a tap on an
old question cannot answer the one that is open now. Functions take a Session and never commit.
"""

from __future__ import annotations

import secrets
import string
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, bindparam, delete, insert, select, update
from sqlalchemy.orm import Session

from store.models import Identity, Org, TeamChannel, TelegramKeyboard

_ALPHABET = string.ascii_letters + string.digits
KEY_LENGTH = 10


@dataclass(frozen=True)
class Keyboard:
    key: str
    chat_id: str
    kind: str
    options: tuple[tuple[str, str], ...]
    controls: tuple[tuple[str, str], ...]
    multi: bool
    selected: tuple[int, ...]
    text: str
    lang: str
    closed: bool


@dataclass(frozen=True)
class NewKeyboard:
    """A keyboard about to be sent (recorded in the turn's unit of work, see `record`)."""

    key: str
    chat_id: str
    kind: str
    options: tuple[tuple[str, str], ...]
    controls: tuple[tuple[str, str], ...]
    multi: bool
    text: str
    lang: str
    question: str | None = None  # the key of the question it asks (in its callback data only)

    def snapshot(self) -> Keyboard:
        return Keyboard(self.key, self.chat_id, self.kind, self.options, self.controls,
                        self.multi, (), self.text, self.lang, False)


def _snapshot(row: TelegramKeyboard) -> Keyboard:
    return Keyboard(row.key, row.chat_id, row.kind,
                    tuple((str(v), str(lbl)) for v, lbl in row.options),
                    tuple((str(v), str(lbl)) for v, lbl in row.controls),
                    row.multi, tuple(int(i) for i in row.selected), row.text, row.lang,
                    row.closed)


def new_key() -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(KEY_LENGTH))


# The statements of every update, built once (as in store/conversations.py) and run on the
# session's connection inside the turn's own unit of work.
_boards = cast(Table, TelegramKeyboard.__table__)
_identities = cast(Table, Identity.__table__)
_orgs = cast(Table, Org.__table__)
_INSERT = insert(_boards)
_ANSWER = (update(_boards)
           .where(_boards.c.key == bindparam("_key"), _boards.c.closed.is_(False))
           .values(closed=True))
_IS_OPEN = select(_boards.c.id).where(_boards.c.key == bindparam("_key"),
                                      _boards.c.closed.is_(False))
_CLOSE_QUESTIONS = (
    update(_boards)
    .where(_boards.c.bot_id == bindparam("_bot"), _boards.c.chat_id == bindparam("_chat"),
           _boards.c.closed.is_(False), _boards.c.kind == "question")
    .values(closed=True))
_UNBLOCK = (
    update(_identities)
    .where(_identities.c.platform == "telegram",
           _identities.c.external_id == bindparam("_user"),
           _identities.c.org_id.in_(select(_orgs.c.id).where(
               _orgs.c.platform == "telegram", _orgs.c.external_id == bindparam("_bot"))),
           _identities.c.blocked_at.is_not(None))
    .values(blocked_at=None))


def answer(session: Session, key: str) -> bool:
    """Close keyboard `key` as answered; False when it was closed already (or is unknown):
    then this answer must not count."""
    result: Any = session.connection().execute(_ANSWER, {"_key": key})
    return int(result.rowcount or 0) == 1


def is_open(session: Session, key: str) -> bool:
    return session.connection().execute(_IS_OPEN, {"_key": key}).first() is not None


def record(session: Session, *, bot_id: str, boards: Sequence[NewKeyboard],
           asked: Sequence[str], now: datetime) -> None:
    """Record keyboards about to be sent; a question asked in a chat (`asked`: chat ids, with
    buttons or without) closes that chat's older question keyboards first."""
    for chat_id in dict.fromkeys(asked):
        session.connection().execute(_CLOSE_QUESTIONS, {"_bot": bot_id, "_chat": chat_id})
    if boards:
        session.connection().execute(_INSERT, [{
            "id": uuid.uuid4(), "key": b.key, "bot_id": bot_id, "chat_id": b.chat_id,
            "kind": b.kind, "options": [list(o) for o in b.options],
            "controls": [list(c) for c in b.controls], "multi": b.multi, "selected": [],
            "text": b.text, "lang": b.lang, "closed": False, "created_at": now,
        } for b in boards])


def unblock(session: Session, bot_id: str, user_key: str) -> int:
    """A user who writes to the bot has not blocked it: clear a recorded block (touches no
    row, and costs no write, when there is none)."""
    result: Any = session.connection().execute(_UNBLOCK, {"_bot": bot_id, "_user": user_key})
    return int(result.rowcount or 0)


def load(session: Session, key: str) -> Keyboard | None:
    row = session.scalars(select(TelegramKeyboard).where(TelegramKeyboard.key == key)).first()
    return None if row is None else _snapshot(row)


def toggle(session: Session, key: str, index: int, chat_id: str | None = None) -> Keyboard | None:
    """Tick or untick option `index` of an open multi-choice keyboard (of chat `chat_id`)."""
    query = select(TelegramKeyboard).where(TelegramKeyboard.key == key)
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update()
    row = session.scalars(query).first()
    if row is not None and chat_id is not None and row.chat_id != chat_id:
        return None
    if row is None or row.closed or not row.multi or not 0 <= index < len(row.options):
        return None if row is None else _snapshot(row)
    chosen = [int(i) for i in row.selected]
    chosen = [i for i in chosen if i != index] if index in chosen else [*chosen, index]
    row.selected = sorted(chosen)
    session.flush()
    return _snapshot(row)


def close(session: Session, key: str) -> None:
    session.execute(update(TelegramKeyboard).where(TelegramKeyboard.key == key)
                    .values(closed=True))


def prune(session: Session, before: datetime) -> int:
    """Forget keyboards older than `before` (their buttons then answer "closed")."""
    result: Any = session.execute(delete(TelegramKeyboard)
                                  .where(TelegramKeyboard.created_at < before))
    return int(result.rowcount or 0)


# ---- who cannot be reached --------------------------------------------------------------------


def _org_ids(bot_id: str) -> Any:
    return select(Org.id).where(Org.platform == "telegram", Org.external_id == bot_id)


def mark_user_blocked(session: Session, bot_id: str, user_key: str,
                      when: datetime | None) -> int:
    """Record that a user blocked the bot (`when`), or unblocked it (`None`)."""
    result: Any = session.execute(
        update(Identity)
        .where(Identity.platform == "telegram", Identity.external_id == user_key,
               Identity.org_id.in_(_org_ids(bot_id)))
        .values(blocked_at=when))
    return int(result.rowcount or 0)


def deactivate_channel(session: Session, bot_id: str, chat_key: str) -> int:
    """A group the bot was removed from, or that is gone, gets no more posts."""
    result: Any = session.execute(
        update(TeamChannel)
        .where(TeamChannel.platform == "telegram", TeamChannel.channel_id == chat_key,
               TeamChannel.org_id.in_(_org_ids(bot_id)), TeamChannel.active.is_(True))
        .values(active=False))
    return int(result.rowcount or 0)


def move_channel(session: Session, bot_id: str, old_key: str, new_key: str) -> None:
    """A group upgraded to a supergroup has a new id; the binding follows it."""
    session.execute(
        update(TeamChannel)
        .where(TeamChannel.platform == "telegram", TeamChannel.channel_id == old_key,
               TeamChannel.org_id.in_(_org_ids(bot_id)))
        .values(channel_id=new_key))


def speaker_lang(session: Session, bot_id: str, user_key: str) -> str | None:
    from store import conversations as conv

    speaker = conv.find_speaker(session, "telegram", bot_id, user_key)
    if speaker is None:
        return None
    return speaker.lang or speaker.org_lang
