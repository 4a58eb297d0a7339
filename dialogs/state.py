"""Dialog state: typed, immutable, stored as JSON (never pickled)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

STATE_SCHEMA = 1


@dataclass(frozen=True)
class DialogState:
    """Where one dialog stands.

    `answers` maps a slot key (`name`, `contacts.0.level`, `contacts.more.0`) to its JSON value;
    `None` means skipped. `bound` maps a record alias to an existing row (`{"id", "name"}`)
    picked by a reference step or handed over by the flow before. `pending` holds a
    sub-question (a "did you mean", a pick from several, the edit list).
    """

    flow: str
    session_id: str
    cursor: str | None = None
    answers: dict[str, Any] = field(default_factory=dict)
    bound: dict[str, dict[str, str]] = field(default_factory=dict)
    pending: dict[str, Any] | None = None
    status: str = "active"
    # the coach told the user this dialog waits for `resume` (after a restart): until then
    # every line is a command, never an answer to its question
    paused: bool = False
    # a line that began with a command word and named a record, held while the coach asks
    # whether it is the answer or the command
    held: str | None = None
    # "<slot key>=<date>": a plan dated in the past that the user was asked to confirm
    confirm: str | None = None

    def to_json(self) -> dict[str, Any]:
        # by hand: dataclasses.asdict deep-copies every answer, on every turn
        return {
            "flow": self.flow,
            "session_id": self.session_id,
            "cursor": self.cursor,
            "answers": self.answers,
            "bound": self.bound,
            "pending": self.pending,
            "status": self.status,
            **({"paused": True} if self.paused else {}),
            **({"held": self.held} if self.held is not None else {}),
            **({"confirm": self.confirm} if self.confirm is not None else {}),
            "schema": STATE_SCHEMA,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DialogState:
        return cls(
            flow=data["flow"],
            session_id=data["session_id"],
            cursor=data.get("cursor"),
            answers=dict(data.get("answers") or {}),
            bound={k: dict(v) for k, v in (data.get("bound") or {}).items()},
            pending=data.get("pending"),
            status=data.get("status", "active"),
            paused=bool(data.get("paused", False)),
            held=data.get("held"),
            confirm=data.get("confirm"),
        )
