"""A turn's replies made ready for Telegram inside the turn's own unit of work.

An update should cost one write transaction (SQLite has one writer: every extra one queues
behind the others). So what sending a reply needs in the store — the rows of the keyboards about
to be sent, the keyboard just answered closed, a block lifted — is written by `TurnWrites`,
which `Coach.handle(after=…)` runs in the turn's commit. The text is rendered there once, and
the keys of the new keyboards are chosen there, before anything is sent.

If sending fails after that commit, the store is still consistent: the answer and the closed
keyboard belong together (a tap on the old question answers "closed"), and a keyboard row whose
message never arrived cannot be tapped; `resume` asks the open question again with a new one.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.orm import Session

from bot.coach import Reply, TurnRejected
from dialogs.messages import Outbound
from handlers.telegram import keyboards as kb
from handlers.telegram.render import split_html, telegram_html, with_mentions
from store import conversations as conv


@dataclass(frozen=True)
class Ready:
    """One message rendered for Telegram: its HTML pieces, and the keyboard of its last."""

    pieces: tuple[str, ...]
    board: kb.NewKeyboard | None = None


def ready(out: Outbound, chat_id: str, lang: str) -> Ready:
    """`out` as Telegram pieces, with a new keyboard (and its new key) when it has buttons."""
    pieces = (tuple(split_html(with_mentions(telegram_html(out.text), out.mentions)))
              if out.text.strip() else ())
    if not (out.options or out.controls) or not pieces:
        return Ready(pieces)
    return Ready(pieces, kb.NewKeyboard(
        key=kb.new_key(), chat_id=chat_id, kind="question" if out.kind == "question" else "post",
        options=tuple((o.value, o.label) for o in out.options),
        controls=tuple((c.value, c.label) for c in out.controls),
        multi=out.multi, text=pieces[-1], lang=lang, question=out.key))


@dataclass
class Prepared:
    """Messages rendered for sending (by `id()` of the reply's Outbound), and the keyboards
    recorded for them."""

    by_message: dict[int, Ready] = field(default_factory=dict)
    boards: list[kb.NewKeyboard] = field(default_factory=list)
    asked: list[str] = field(default_factory=list)  # chats where a question is asked

    def add(self, out: Outbound, chat_id: str, lang: str) -> None:
        made = ready(out, chat_id, lang)
        self.by_message[id(out)] = made
        if made.board is not None:
            self.boards.append(made.board)
        if out.kind == "question":
            self.asked.append(chat_id)

    def record(self, session: Session, bot_id: str, now: datetime) -> None:
        kb.record(session, bot_id=bot_id, boards=self.boards, asked=self.asked, now=now)


PLATFORM = "telegram"


class KeyboardClosed(TurnRejected):
    """The keyboard a tap answers was closed first (answered, or a newer question was asked):
    the turn is rolled back and the tap answered "no longer open"."""


class AlreadyHandled(TurnRejected):
    """A redelivered update whose turn has no dedupe of its own (the /start greeting)."""


class TurnWrites:
    """`after` for `Coach.handle`: the Telegram side of a turn, in the turn's unit of work.

    `route(out)` is the chat a reply message goes to; `answers`: the keyboard a tap answers
    (closed with the turn, or the turn does not count); `keeps`: the keyboard of a control that
    leaves the question open (tip), which must still be open; `unblock`: the user whose recorded
    block a private message lifts; `event_id`: an update to handle once, for a turn that does
    not dedupe it itself (the greeting)."""

    def __init__(self, *, bot_id: str, now: datetime, route: Callable[[Outbound], str],
                 answers: str | None = None, keeps: str | None = None,
                 unblock: str | None = None, event_id: str | None = None) -> None:
        self.bot_id = bot_id
        self.event_id = event_id
        self.now = now
        self.route = route
        self.answers = answers
        self.keeps = keeps
        self.unblock = unblock
        self.prepared = Prepared()

    def __call__(self, session: Session, reply: Reply) -> Reply:
        self.prepared = Prepared()  # (run again when a stale dialog is re-shown)
        if self.event_id is not None and not conv.first_time(session, PLATFORM, self.event_id,
                                                             self.now):
            raise AlreadyHandled(self.event_id)
        if self.answers is not None and not kb.answer(session, self.answers):
            raise KeyboardClosed(self.answers)
        if self.keeps is not None and not kb.is_open(session, self.keeps):
            raise KeyboardClosed(self.keeps)
        if self.unblock is not None:
            kb.unblock(session, self.bot_id, self.unblock)
        for out in reply.messages:
            self.prepared.add(out, self.route(out), reply.lang)
        self.prepared.record(session, self.bot_id, self.now)
        return reply


class BoardCache:
    """The keyboards this process sent lately, so a tap needs no read of its own (what a button
    stands for never changes; whether it is still open is checked in the turn). Keyboards that
    this process knows to be closed are dropped, so a tap on them costs no turn either."""

    def __init__(self, size: int = 4096) -> None:
        self.size = size
        self._boards: OrderedDict[str, kb.Keyboard] = OrderedDict()
        self._questions: dict[str, list[str]] = {}  # chat -> its cached question keyboards

    def __len__(self) -> int:
        return len(self._boards)

    def get(self, key: str) -> kb.Keyboard | None:
        return self._boards.get(key)

    def forget(self, key: str) -> None:
        self._boards.pop(key, None)

    def sent(self, prepared: Prepared) -> None:
        """Note what a committed turn recorded."""
        self.asked(prepared.asked)
        for board in prepared.boards:
            self._boards[board.key] = board.snapshot()
            if board.kind == "question":
                self._questions.setdefault(board.chat_id, []).append(board.key)
        while len(self._boards) > self.size:
            self._boards.popitem(last=False)
        if len(self._questions) > self.size:  # forget the chats whose keyboards are gone
            self._questions = {chat: alive for chat, keys in self._questions.items()
                               if (alive := [k for k in keys if k in self._boards])}

    def asked(self, chats: Iterable[str]) -> None:
        """A question asked in these chats closed their older question keyboards."""
        for chat_id in dict.fromkeys(chats):
            for key in self._questions.pop(chat_id, ()):
                self._boards.pop(key, None)
