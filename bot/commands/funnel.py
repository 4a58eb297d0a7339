"""`advance` and `override`: move an opportunity down the funnel.

`advance <opportunity>` moves it to the next stage only when the stage's end marker is
recorded, and otherwise says exactly what is missing. `override <opportunity>` does the same for
a manager or admin even when a marker is missing; the override is logged as an activity.
"""

from __future__ import annotations

from collections.abc import Sequence

from bot.commands import CommandRequest, Registry
from bot.method import stage_label, status_view
from dialogs.messages import Outbound
from store import funnel, permissions
from store.enums import FunnelStage, Role
from store.models import Opportunity
from store.permissions import Access


def _pick(req: CommandRequest, command: str) -> Opportunity | list[Outbound]:
    """The opportunity the argument names (or the rep's most urgent one)."""
    if not req.arg:
        opp = funnel.most_urgent(req.session, req.speaker.user_id, req.ctx.today)
        if opp is None:
            return [Outbound(req.text("funnel.which", command=command), kind="error")]
        return opp
    s = req.speaker
    who = permissions.viewer(req.session, s.org_id, s.user_id, s.role)
    # a rep moves their own deals, a manager their team's too (store/permissions.py); a
    # deal outside that answers as one that does not exist
    found = funnel.find_opportunity(req.session, s.org_id, req.arg[:200],
                                    owners=who.owners(Access.MANAGE),
                                    prefer_open=True)  # a closed deal cannot move
    if found.opportunity is not None:
        return found.opportunity
    if found.choices:
        return [Outbound(req.text("funnel.ambiguous", typed=req.arg[:80],
                                  names=list(found.choices), command=command), kind="error")]
    return [Outbound(req.text("funnel.not_found", typed=req.arg[:80]), kind="error")]


def _move(req: CommandRequest, override: bool) -> Sequence[Outbound]:
    command = "override" if override else "advance"
    manager = req.speaker.role in (Role.MANAGER, Role.ADMIN)
    if override and not manager:
        return [Outbound(req.text("funnel.managers_only"), kind="error")]
    picked = _pick(req, command)
    if not isinstance(picked, Opportunity):
        return picked
    opp = picked
    move = funnel.advance(req.session, opp, user_id=req.speaker.user_id, role=req.speaker.role,
                          now=req.now, override=override)
    r, lang = req.renderer, req.ctx.lang
    if move.to_stage is None:
        return [Outbound(req.text("funnel.closed", name=opp.name,
                                  stage=stage_label(r, lang, move.from_stage)))]
    if not move.moved:
        st = funnel.standing(req.session, opp)
        view = status_view(r, lang, st)
        into_won = move.to_stage == FunnelStage.WON
        return [Outbound(r.template("method_refused.j2", lang, manager=manager and not into_won,
                                    won_is_a_fact=into_won, **view),
                         kind="error")]
    return [Outbound(r.template(
        "method_moved.j2", lang, opp=opp.name, step=funnel.STEP_OF.get(opp.stage, 0),
        stage=stage_label(r, lang, opp.stage), about=r.text(lang, f"funnel.about.{opp.stage}"),
        overridden=move.overridden,
        missing=[r.text(lang, f"funnel.marker.{m}", name=opp.name) for m in move.missing]))]


def advance(req: CommandRequest) -> Sequence[Outbound]:
    return _move(req, override=False)


def override(req: CommandRequest) -> Sequence[Outbound]:
    return _move(req, override=True)


def register(registry: Registry) -> None:
    registry.add("advance", advance, order=13)
    registry.add("override", override, order=14)
