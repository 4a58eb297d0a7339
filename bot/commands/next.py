"""`next`: the single most useful next action for the rep's most urgent opportunity."""

from __future__ import annotations

from collections.abc import Sequence

from bot.commands import CommandRequest, Registry
from bot.method import next_action
from dialogs.messages import Outbound


def show_next(req: CommandRequest) -> Sequence[Outbound]:
    advice = next_action(req.session, req.speaker, req.ctx, req.renderer)
    if advice is None:
        return [Outbound(req.text("next.none"))]
    return [advice]


def register(registry: Registry) -> None:
    registry.add("next", show_next, order=12)
