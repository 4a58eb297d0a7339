"""The six-step method around the flows: reports when a flow is done, and the next action.

Flows name what they need here: `uses: [opportunity]` (the facts `store.funnel.facts` looks up
for their texts and checks) and `report: <name>` (one of `REPORTS`, added to the messages when
the flow is done, after its answers are written). Views are built as data and rendered by the
`method_*.j2` templates with the `method.yaml` catalogs.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from markupsafe import Markup
from sqlalchemy.orm import Session

from dialogs.messages import Outbound, TurnContext
from dialogs.render import Renderer
from dialogs.state import DialogState
from store import funnel
from store.conversations import Speaker
from store.models import Opportunity

FACT_SETS = frozenset({"opportunity"})


@dataclass(frozen=True)
class ReportRequest:
    session: Session
    speaker: Speaker
    state: DialogState
    ctx: TurnContext
    renderer: Renderer

    @property
    def lang(self) -> str:
        return self.ctx.lang

    def opportunity(self) -> Opportunity | None:
        ref = self.state.bound.get("opportunity")
        if not ref or not ref.get("id"):
            return None
        opp = self.session.get(Opportunity, uuid.UUID(ref["id"]))
        return opp if opp is not None and opp.org_id == self.speaker.org_id else None


Report = Callable[[ReportRequest], Sequence[Outbound]]


def stage_label(r: Renderer, lang: str, stage: str) -> Markup:
    return r.text(lang, f"funnel.stage.{stage}")


def status_view(r: Renderer, lang: str, st: funnel.Standing) -> dict[str, Any]:
    """Where an opportunity stands and what its step still misses, for `method_status.j2`."""
    opp = st.opportunity
    missing = st.missing()
    return {
        "opp": opp.name,
        "account": st.account_name,
        "step": funnel.STEP_OF.get(opp.stage, 0),
        "stage": stage_label(r, lang, opp.stage),
        "missing": [r.text(lang, f"funnel.marker.{m}", name=opp.name) for m in missing],
        "ready": not missing and funnel.next_stage(opp.stage) is not None,
        "next_stage": stage_label(r, lang, funnel.next_stage(opp.stage) or opp.stage),
    }


def _status(req: ReportRequest) -> list[Outbound]:
    opp = req.opportunity()
    if opp is None:
        return []
    st = funnel.standing(req.session, opp)
    text = req.renderer.template("method_status.j2", req.lang,
                                 **status_view(req.renderer, req.lang, st))
    return [Outbound(text, kind="status")]


def spin_feedback(counts: dict[str, int]) -> list[str]:
    """Feedback codes on a question mix (`method.spin.fb.<code>` in the catalogs)."""
    s, p, i, n = (counts.get(k, 0) for k in "SPIN")
    total = s + p + i + n
    if total == 0:
        return ["none"]
    codes = []
    if s >= 4 and s > p + i + n:
        codes.append("too_many_situation")
    if p == 0:
        codes.append("no_problem")
    elif i == 0:
        codes.append("no_implication")
    elif n == 0:
        codes.append("no_need_payoff")
    if not codes:
        codes.append("good_mix")
    return codes


def _spin(req: ReportRequest) -> list[Outbound]:
    opp = req.opportunity()
    if opp is None:
        return []
    found = funnel.facts(req.session, req.speaker.org_id, req.state.bound, req.ctx.today)
    counts: dict[str, int] = found.get("spin", {})
    r, lang = req.renderer, req.lang
    lines = [r.text(lang, f"method.spin.fb.{code}", s=counts.get("S", 0),
                    p=counts.get("P", 0), i=counts.get("I", 0), n=counts.get("N", 0))
             for code in spin_feedback(counts)]
    text = r.template("method_spin.j2", lang, opp=opp.name, counts=counts, lines=lines)
    return [Outbound(text, kind="coach"), *_status(req)]


def _money(amount: Any, currency: str) -> str:
    from dialogs.engine import format_money

    return format_money({"amount": amount, "currency": currency})


def _receivables(req: ReportRequest) -> list[Outbound]:
    """After an invoice, a payment or a collection step: what is owed, and after the last
    payment the referral request."""
    opp = req.opportunity()
    if opp is None:
        return []
    funnel.settle_invoices(req.session, opp.id, req.ctx.today)
    st = funnel.standing(req.session, opp)
    collected = st.has("all_collected") and opp.stage in ("collection", "won")
    if collected:
        funnel.close_out(opp)  # the money is in: no step left to plan on the deal
    r, lang = req.renderer, req.lang
    rows = [{"number": inv.number, "amount": _money(inv.amount, inv.currency),
             "paid": _money(inv.paid, inv.currency),
             "outstanding": _money(inv.outstanding, inv.currency),
             "due": inv.due_on.isoformat(),
             "overdue": max((req.ctx.today - inv.due_on).days, 0) if inv.outstanding else 0}
            for inv in st.invoices]
    contact = st.trusted_contact
    text = r.template("method_receivables.j2", lang, opp=opp.name, rows=rows,
                      all_collected=collected, referral=opp.referral_note or "",
                      to_invoice=_money(st.to_invoice, opp.currency or "")
                      if st.invoices and st.to_invoice else None,
                      contract=_money(opp.amount, opp.currency or "")
                      if opp.amount else None,
                      contact=contact.name if contact else st.account_name)
    return [Outbound(text, kind="status", private=True), *_status(req)]


REPORTS: dict[str, Report] = {
    "status": _status,
    "spin": _spin,
    "receivables": _receivables,
}


# ---- the next action -----------------------------------------------------------------------


def next_view(r: Renderer, lang: str, st: funnel.Standing) -> dict[str, Any]:
    """"For X you are in step 3; the buying process is at purchase design; the designer is
    Li Wei (owl: bring data); next: …" as data for `method_next.j2`."""
    opp = st.opportunity
    missing = st.missing()
    role = funnel.PHASE_ROLE.get(opp.phase or "")
    key = st.key_contact(opp.phase)
    if missing:
        action = r.text(lang, f"funnel.action.{missing[0]}", name=opp.name,
                        command=funnel.MARKER_FLOW[missing[0]])
    else:
        action = r.text(lang, "funnel.action.advance", name=opp.name)
    return {
        "opp": opp.name,
        "account": st.account_name,
        "step": funnel.STEP_OF.get(opp.stage, 0),
        "stage": stage_label(r, lang, opp.stage),
        "phase": r.text(lang, f"funnel.phase.{opp.phase}") if opp.phase else None,
        "role": r.text(lang, f"funnel.role.{role}") if role else None,
        "contact": key.name if key else None,
        "style": r.text(lang, f"method.style_short.{key.comm_style or 'unknown'}")
        if key else None,
        "planned": opp.next_step,
        "planned_due": opp.next_step_due.isoformat() if opp.next_step_due else None,
        "action": action,
    }


def next_action(session: Session, speaker: Speaker, ctx: TurnContext,
                r: Renderer) -> Outbound | None:
    """The single most useful next action for the rep's most urgent opportunity."""
    opp = funnel.most_urgent(session, speaker.user_id, ctx.today)
    if opp is None:
        return None
    st = funnel.standing(session, opp)
    return Outbound(r.template("method_next.j2", ctx.lang, **next_view(r, ctx.lang, st)),
                    kind="next")
