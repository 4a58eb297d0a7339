"""The store side of inline keyboards: what a button stands for, and whether it still counts.

A button's `callback_data` holds only a keyboard's short key and an index (64 bytes is too
little for an answer in general); the row here holds the values. A dialog's question keyboard
is closed when it is answered or when a newer question is asked in that chat, so a tap on an
old question cannot answer the one that is open now. Functions take a Session and never commit.
"""

from __future__ import annotations

import secrets
import string
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select, update
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


def _snapshot(row: TelegramKeyboard) -> Keyboard:
    return Keyboard(row.key, row.chat_id, row.kind,
                    tuple((str(v), str(lbl)) for v, lbl in row.options),
                    tuple((str(v), str(lbl)) for v, lbl in row.controls),
                    row.multi, tuple(int(i) for i in row.selected), row.text, row.lang,
                    row.closed)


def new_key() -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(KEY_LENGTH))


def create(session: Session, *, key: str, bot_id: str, chat_id: str, kind: str,
           options: list[tuple[str, str]], controls: list[tuple[str, str]], multi: bool,
           text: str, lang: str, now: datetime, close: str | None = None) -> None:
    """Record a keyboard about to be sent; a new question closes the chat's older ones, and
    `close` names one more (the keyboard just answered, whatever its kind)."""
    if close is not None:
        session.execute(update(TelegramKeyboard).where(TelegramKeyboard.key == close)
                        .values(closed=True))
    if kind == "question":
        session.execute(
            update(TelegramKeyboard)
            .where(TelegramKeyboard.bot_id == bot_id, TelegramKeyboard.chat_id == chat_id,
                   TelegramKeyboard.closed.is_(False), TelegramKeyboard.kind == "question")
            .values(closed=True))
    session.add(TelegramKeyboard(
        key=key, bot_id=bot_id, chat_id=chat_id, kind=kind,
        options=[list(o) for o in options], controls=[list(c) for c in controls], multi=multi,
        selected=[], text=text, lang=lang, closed=False, created_at=now))


def load(session: Session, key: str) -> Keyboard | None:
    row = session.scalars(select(TelegramKeyboard).where(TelegramKeyboard.key == key)).first()
    return None if row is None else _snapshot(row)


def toggle(session: Session, key: str, index: int) -> Keyboard | None:
    """Tick or untick option `index` of an open multi-choice keyboard."""
    query = select(TelegramKeyboard).where(TelegramKeyboard.key == key)
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update()
    row = session.scalars(query).first()
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
