"""The funnel: where an opportunity stands, what ends its step, and what the flows look up.

Exit criteria follow METHODOLOGY.md: an opportunity leaves a stage only when that stage's end
marker is recorded (a real opportunity judged; trust with a key contact; written requirements;
buying signals and negotiation started; contract signed; deposit paid; delivery accepted; all
money collected). Functions take a `Session` and never commit.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from markupsafe import Markup
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from dialogs import parsing
from store.enums import REOPENABLE_STAGES, BuyingPhase, CollectionRung, FunnelStage, Role
from store.models import (
    Account,
    Activity,
    BuyingSignal,
    CollectionAction,
    CompetitorNote,
    Contact,
    Invoice,
    Opportunity,
    Org,
    Payment,
    SpinEntry,
)

# the funnel, top to bottom, and the step of the method each stage belongs to
FUNNEL: tuple[str, ...] = (
    FunnelStage.ANALYSIS, FunnelStage.TRUST, FunnelStage.NEEDS, FunnelStage.VALUE,
    FunnelStage.COMMITMENT, FunnelStage.DEPOSIT, FunnelStage.ORDER, FunnelStage.COLLECTION,
    FunnelStage.WON,
)
STEP_OF: dict[str, int] = {
    "analysis": 1, "trust": 2, "needs": 3, "value": 4, "commitment": 5, "deposit": 6,
    "order": 6, "collection": 6, "won": 6,
}
# the markers that end each stage, checked in this order
MARKERS: dict[str, tuple[str, ...]] = {
    "analysis": ("verdict",),
    "trust": ("key_trust",),
    "needs": ("requirements",),
    "value": ("signals", "negotiation"),
    "commitment": ("contract",),
    "deposit": ("deposit",),
    "order": ("acceptance",),
    "collection": ("invoices", "all_invoiced", "all_collected"),
}
# the flow that records each marker (what the coach suggests when it is missing)
MARKER_FLOW: dict[str, str] = {
    "verdict": "qualify", "key_trust": "trust", "requirements": "needs", "signals": "signals",
    "negotiation": "signals", "contract": "contract", "deposit": "invoice",
    "acceptance": "contract", "invoices": "invoice", "all_invoiced": "invoice",
    "all_collected": "invoice",
}
# the buying process: the key customer role of each phase
PHASE_ROLE: dict[str, str] = {
    BuyingPhase.DISCOVER: "initiator", BuyingPhase.DELIBERATION: "decision_maker",
    BuyingPhase.DESIGN: "designer", BuyingPhase.EVALUATION: "evaluator",
    BuyingPhase.COMMITMENT: "decision_maker", BuyingPhase.USE: "user",
}
LEAD_IN = frozenset({BuyingPhase.DISCOVER, BuyingPhase.DELIBERATION, BuyingPhase.DESIGN})
TRUSTED = frozenset({"trust", "alliance"})
RELATIONSHIP_ORDER = {"acquaint": 1, "date": 2, "trust": 3, "alliance": 4}
# days overdue at which each rung of the dunning ladder is due (org settings may override)
LADDER_DAYS: dict[str, int] = {
    CollectionRung.PHONE_GENTLE: 1, CollectionRung.PHONE_FOCUSED: 15,
    CollectionRung.DUNNING_LETTER: 30, CollectionRung.OVERDUE_NOTICE: 45,
    CollectionRung.VISIT: 60, CollectionRung.COMPROMISE: 90, CollectionRung.DEADLINE: 105,
    CollectionRung.LEGAL: 120,
}
PRICE_SIGNALS = frozenset({"asks_price_details", "asks_payment_terms", "asks_discount"})
OPEN = frozenset(FUNNEL[:-1])
ZERO = Decimal("0.00")


def step_label(label: str, stage: str | None) -> str:
    """A funnel stage's label with its step of the method in front (`6 · Press for the
    deposit`), as cards, nudges, the digest, its chart and the Slack home all show it: the one
    numbering is `STEP_OF` (what `advance` and `next` say). A deal out of the funnel (won,
    lost, keep in touch) has no step."""
    step = STEP_OF.get(stage or "") if stage in OPEN else None
    text = f"{step} · {label}" if step else str(label)
    return Markup(text) if isinstance(label, Markup) else text  # markup stays markup


def next_stage(stage: str) -> str | None:
    if stage not in OPEN:
        return None
    return FUNNEL[FUNNEL.index(stage) + 1]


def reopen_stage(opp: Opportunity) -> str:
    """Where `reopen` brings a deal back: the stage it was lost in, else (a keep-in-touch
    deal, or one lost before that was recorded) customer analysis, to be judged again."""
    return opp.lost_from if opp.lost_from in OPEN else FunnelStage.ANALYSIS.value


# ---- look-ups ---------------------------------------------------------------------------------


def _owned(query: Any, column: Any, owners: frozenset[uuid.UUID] | None) -> Any:
    """`query` limited to rows whose `column` is one of `owners` (`None`: anyone's)."""
    return query if owners is None else query.where(column.in_(sorted(owners)))


def opportunity_candidates(session: Session, org_id: uuid.UUID,
                           account_id: str | None = None, *,
                           owners: frozenset[uuid.UUID] | None = None,
                           limit: int | None = None) -> list[tuple[str, str]]:
    """(id, name) of opportunities for "which opportunity?", each also under its
    customer's name (so `spin Daqing` finds the Daqing opportunity); own names first, at
    most `limit` opportunities; with `owners` (store/permissions.py), only theirs."""
    query = _owned(select(Opportunity.id, Opportunity.name, Account.name)
                   .join(Account, Account.id == Opportunity.account_id)
                   .where(Opportunity.org_id == org_id)
                   .order_by(Opportunity.name), Opportunity.owner_id, owners)
    if account_id is not None:
        query = query.where(Opportunity.account_id == uuid.UUID(account_id))
    if limit is not None:
        query = query.limit(limit)
    rows = session.execute(query).all()
    out = [(str(oid), name) for oid, name, _account in rows]
    if account_id is not None:
        return out
    # and under its customer's name in each spelling ("大庆油田", "Daqing Oilfield")
    out.extend(with_aliases([(str(oid), account) for oid, _name, account in rows]))
    return out


SUGGESTED = 6  # rows a "which one?" question offers to tap


def suggestions(session: Session, org_id: uuid.UUID, user_id: uuid.UUID, kind: str,
                scope: str | None, *, limit: int = SUGGESTED) -> list[tuple[str, str]]:
    """(id, name) of the rows a "which one?" question offers the asker: their open
    opportunities, most urgent first (next step due soonest, then the most recently active);
    their accounts, most recently changed first; the contacts at a customer, most recently
    changed first; open invoices of their deals, earliest due first. Within the account or
    opportunity the dialog has bound, when it has one; always the asker's own rows (what a
    dialog may change, store/permissions.py)."""
    query: Any
    if kind == "opportunity":
        query = (select(Opportunity.id, Opportunity.name)
                 .where(Opportunity.org_id == org_id, Opportunity.owner_id == user_id,
                        Opportunity.stage.in_(OPEN))
                 .order_by(Opportunity.next_step_due.asc().nulls_last(),
                           Opportunity.last_activity_at.desc().nulls_last(), Opportunity.id))
        if scope is not None:
            query = query.where(Opportunity.account_id == uuid.UUID(scope))
    elif kind == "account":
        query = (select(Account.id, Account.name)
                 .where(Account.org_id == org_id, Account.owner_id == user_id)
                 .order_by(Account.updated_at.desc(), Account.id))
    elif kind == "contact":
        if scope is None:
            return []
        query = (select(Contact.id, Contact.name)
                 .where(Contact.org_id == org_id, Contact.account_id == uuid.UUID(scope),
                        Contact.owner_id == user_id)
                 .order_by(Contact.updated_at.desc(), Contact.id))
    elif kind == "invoice":
        query = (select(Invoice.id, Invoice.number)
                 .join(Opportunity, Opportunity.id == Invoice.opportunity_id)
                 .where(Invoice.org_id == org_id, Invoice.status == "open",
                        Opportunity.owner_id == user_id)
                 .order_by(Invoice.due_on, Invoice.number))
        if scope is not None:
            query = query.where(Invoice.opportunity_id == uuid.UUID(scope))
    else:
        return []
    return [(str(rid), name) for rid, name in session.execute(query.limit(limit))]


def row_exists(session: Session, table_name: str, row_id: str) -> bool:
    table = Opportunity.metadata.tables[table_name]
    return session.execute(select(table.c.id).where(
        table.c.id == uuid.UUID(row_id))).first() is not None


def with_aliases(pairs: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """(id, name) pairs, then each bilingual name's parts as further names of the same row:
    "钱宇 (Qian Yu)" is also "钱宇" and "Qian Yu" (the first name stays what it is called)."""
    out = list(pairs)
    for rid, name in pairs:
        if "(" in name and name.endswith(")"):
            head, _, tail = name[:-1].partition("(")
            out.extend((rid, part.strip()) for part in (head, tail) if part.strip())
    return out


def invoice_candidates(session: Session, org_id: uuid.UUID, opportunity_id: str | None, *,
                       owners: frozenset[uuid.UUID] | None = None) -> list[tuple[str, str]]:
    """(id, number) of invoices still open, of one opportunity when it is known; with
    `owners`, only of their deals."""
    query = _owned(select(Invoice.id, Invoice.number)
                   .join(Opportunity, Opportunity.id == Invoice.opportunity_id)
                   .where(Invoice.org_id == org_id, Invoice.status == "open")
                   .order_by(Invoice.due_on), Opportunity.owner_id, owners)
    if opportunity_id is not None:
        query = query.where(Invoice.opportunity_id == uuid.UUID(opportunity_id))
    return [(str(iid), number) for iid, number in session.execute(query)]


def contact_account(session: Session, opportunity_id: str) -> str | None:
    found = session.execute(select(Opportunity.account_id).where(
        Opportunity.id == uuid.UUID(opportunity_id))).scalar()
    return str(found) if found else None


@dataclass(frozen=True)
class Found:
    """The opportunity a command named: exactly one, or the names it could mean."""

    opportunity: Opportunity | None
    choices: tuple[str, ...] = ()


def find_opportunity(session: Session, org_id: uuid.UUID, text: str, *,
                     owners: frozenset[uuid.UUID] | None, prefer_open: bool = False) -> Found:
    """The opportunity of `owners` (store/permissions.py) that `text` names (its own name or
    its customer's, exactly, else the names like it). With `prefer_open`, where it could mean
    several and only some are still in the funnel, those are what it means (`advance daqing`
    when Daqing's other deal is lost)."""
    candidates = opportunity_candidates(session, org_id, owners=owners)
    key = parsing.normalize_key(text)
    canonical: dict[str, str] = {}
    for oid, name in candidates:
        canonical.setdefault(oid, name)
    ids = list(dict.fromkeys(oid for oid, name in candidates
                             if parsing.normalize_key(name) == key))
    if not ids:
        by_name: dict[str, list[str]] = {}
        for oid, name in candidates:
            by_name.setdefault(name, []).append(oid)
        near = parsing.close_matches(text, list(by_name))
        # names that contain what was typed beat names that merely look alike; a name that
        # merely looks alike is only offered ("did you mean"), never acted on
        containing = [n for n in near if key and key in parsing.normalize_key(n)]
        if not containing:
            return Found(None, tuple(dict.fromkeys(
                canonical[oid] for name in near for oid in by_name[name])))
        ids = list(dict.fromkeys(oid for name in containing for oid in by_name[name]))
    if prefer_open and len(ids) > 1:
        open_ids = {str(oid) for oid in session.scalars(select(Opportunity.id).where(
            Opportunity.id.in_([uuid.UUID(i) for i in ids]), Opportunity.stage.in_(OPEN)))}
        ids = [i for i in ids if i in open_ids] or ids
    if len(ids) == 1:
        return Found(session.get(Opportunity, uuid.UUID(ids[0])))
    return Found(None, tuple(canonical[i] for i in ids))


# ---- money owed -------------------------------------------------------------------------------


@dataclass(frozen=True)
class InvoiceState:
    id: uuid.UUID
    number: str
    amount: Decimal
    currency: str
    paid: Decimal
    issued_on: date
    due_on: date
    status: str

    @property
    def outstanding(self) -> Decimal:
        return max(self.amount - self.paid, ZERO)


def invoices_of(session: Session, opportunity_id: uuid.UUID) -> list[InvoiceState]:
    paid = (select(Payment.invoice_id, func.coalesce(func.sum(Payment.amount), 0).label("paid"))
            .group_by(Payment.invoice_id).subquery())
    rows = session.execute(
        select(Invoice.id, Invoice.number, Invoice.amount, Invoice.currency,
               func.coalesce(paid.c.paid, 0), Invoice.issued_on, Invoice.due_on, Invoice.status)
        .outerjoin(paid, paid.c.invoice_id == Invoice.id)
        .where(Invoice.opportunity_id == opportunity_id)
        .order_by(Invoice.issued_on, Invoice.number)
    ).all()
    return [InvoiceState(r[0], r[1], r[2], r[3], _dec(r[4]), r[5], r[6], r[7]) for r in rows]


def _dec(value: Any) -> Decimal:
    return Decimal(str(value or 0)).quantize(Decimal("0.01"))


def settle_invoices(session: Session, opportunity_id: uuid.UUID, today: date) -> None:
    """Mark fully paid invoices paid (and reopen one whose payments were taken back)."""
    for inv in invoices_of(session, opportunity_id):
        if inv.status == "open" and inv.paid >= inv.amount:
            row = session.get(Invoice, inv.id)
            assert row is not None
            row.status, row.closed_on = "paid", today
        elif inv.status == "paid" and inv.paid < inv.amount:
            row = session.get(Invoice, inv.id)
            assert row is not None
            row.status, row.closed_on = "open", None
    session.flush()


def ladder_days(org: Org | None) -> dict[str, int]:
    custom = (org.settings or {}).get("collection_ladder_days") if org is not None else None
    if isinstance(custom, Mapping):
        return {str(k): int(v) for k, v in custom.items()}
    return dict(LADDER_DAYS)


def suggested_rung(days_overdue: int, done: Sequence[str], ladder: Mapping[str, int]) -> str | None:
    """The highest rung due by the ageing, but never more than one above the last one taken."""
    rungs = sorted(ladder, key=lambda r: ladder[r])
    due = [r for r in rungs if days_overdue >= ladder[r]]
    if not due:
        return None
    taken = [rungs.index(r) for r in done if r in rungs]
    top = max(taken, default=-1)
    return rungs[min(rungs.index(due[-1]), top + 1)]


# ---- markers ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Standing:
    """An opportunity's markers: which are recorded, and what stands behind them."""

    opportunity: Opportunity
    account_name: str
    contacts: tuple[Contact, ...]
    signals: tuple[str, ...]
    invoices: tuple[InvoiceState, ...]

    def has(self, marker: str) -> bool:
        opp = self.opportunity
        if marker == "verdict":
            return opp.verdict == "opportunity"
        if marker == "key_trust":
            return self.trusted_contact is not None
        if marker == "requirements":
            return opp.requirements_on is not None
        if marker == "signals":
            return bool(self.signals)
        if marker == "negotiation":
            return opp.negotiation_on is not None
        if marker == "contract":
            return opp.contract_on is not None
        if marker == "deposit":
            return any(inv.paid > 0 for inv in self.invoices)
        if marker == "acceptance":
            return opp.accepted_on is not None
        if marker == "invoices":
            return bool(self.invoices)
        if marker == "all_invoiced":
            # invoiced at least the contract amount (the opportunity's amount, when known)
            return bool(self.invoices) and self.to_invoice == 0
        if marker == "all_collected":
            # collected means everything invoiced, and every invoice paid
            return self.has("all_invoiced") and all(inv.outstanding == 0
                                                    for inv in self.invoices)
        raise KeyError(marker)

    @property
    def trusted_contact(self) -> Contact | None:
        keys = [c for c in self.contacts if c.buying_roles and c.relationship_stage in TRUSTED]
        return keys[0] if keys else None

    def missing(self) -> list[str]:
        """The markers that keep the opportunity in its stage (empty: it may move on)."""
        return [m for m in MARKERS.get(self.opportunity.stage, ()) if not self.has(m)]

    @property
    def invoiced(self) -> Decimal:
        return sum((inv.amount for inv in self.invoices), ZERO)

    @property
    def to_invoice(self) -> Decimal:
        """What of the contract amount no invoice covers yet."""
        amount = self.opportunity.amount
        return max(Decimal(amount) - self.invoiced, ZERO) if amount else ZERO

    @property
    def outstanding(self) -> Decimal:
        return sum((inv.outstanding for inv in self.invoices), ZERO)

    def key_contact(self, phase: str | None) -> Contact | None:
        """Who holds the key role of the buying phase (the warmest relationship first)."""
        role = PHASE_ROLE.get(phase or "")
        if role is None:
            return None
        holders = [c for c in self.contacts if role in (c.buying_roles or [])]
        holders.sort(key=lambda c: -RELATIONSHIP_ORDER.get(c.relationship_stage or "", 0))
        return holders[0] if holders else None


def standing(session: Session, opp: Opportunity) -> Standing:
    account_name = session.execute(
        select(Account.name).where(Account.id == opp.account_id)).scalar_one()
    contacts = tuple(session.scalars(
        select(Contact).where(Contact.account_id == opp.account_id).order_by(Contact.name)))
    signals = tuple(session.scalars(
        select(BuyingSignal.signal).where(BuyingSignal.opportunity_id == opp.id)
        .order_by(BuyingSignal.observed_at)))
    return Standing(opp, account_name, contacts, signals, tuple(invoices_of(session, opp.id)))


@dataclass(frozen=True)
class Move:
    """What asking to advance did: moved (from -> to), or refused with what is missing."""

    moved: bool
    from_stage: str
    to_stage: str | None
    missing: tuple[str, ...] = ()
    overridden: bool = False


def advance(session: Session, opp: Opportunity, *, user_id: uuid.UUID, role: str,
            now: datetime, override: bool = False) -> Move:
    """Move the opportunity one stage down the funnel if its end markers are recorded; a
    manager or admin may override (except into won: money not collected is not won), and the
    override is logged as an activity."""
    stage = opp.stage
    target = next_stage(stage)
    if target is None:
        return Move(False, stage, None)
    missing = tuple(standing(session, opp).missing())
    # won is a fact (everything invoiced and collected), not a judgement: no override makes it
    if missing and (target == FunnelStage.WON
                    or not (override and role in (Role.MANAGER, Role.ADMIN))):
        return Move(False, stage, target, missing)
    opp.stage = target
    opp.stage_entered_at = now
    opp.last_activity_at = now
    if target == FunnelStage.WON:
        opp.closed_at = now
        close_out(opp)
    note = f"{stage} -> {target}"
    if missing:
        note += f" (manager override; missing: {', '.join(missing)})"
    session.add(Activity(id=uuid.uuid4(), org_id=opp.org_id, user_id=user_id,
                         account_id=opp.account_id, opportunity_id=opp.id,
                         kind="stage_change", note=note, occurred_at=now, created_at=now))
    session.flush()
    return Move(True, stage, target, missing, overridden=bool(missing))


def close_out(opp: Opportunity) -> None:
    """A deal that has ended (won, everything collected): nothing more is planned on it."""
    opp.next_step = None
    opp.next_step_due = None


# ---- what a rep should do next ------------------------------------------------------------------


def most_urgent(session: Session, owner_id: uuid.UUID, today: date) -> Opportunity | None:
    """The rep's open opportunity that needs them first: the earliest date that matters
    (next step due, an open invoice due, the expected close), later stages first on a tie."""
    opps = list(session.scalars(select(Opportunity).where(
        Opportunity.owner_id == owner_id, Opportunity.stage.in_(OPEN))))
    if not opps:
        return None
    due = dict(session.execute(
        select(Invoice.opportunity_id, func.min(Invoice.due_on))
        .where(Invoice.opportunity_id.in_([o.id for o in opps]), Invoice.status == "open")
        .group_by(Invoice.opportunity_id)).all())

    def key(opp: Opportunity) -> tuple[date, int, str]:
        dates = [d for d in (opp.next_step_due, due.get(opp.id), opp.expected_close) if d]
        first = min(dates) if dates else date.max
        return first, -FUNNEL.index(opp.stage), opp.name

    return min(opps, key=key)


# ---- what a flow's texts and checks may use (`f` in flow files) --------------------------------


def facts(session: Session, org_id: uuid.UUID, bound: Mapping[str, Mapping[str, str]],
          today: date) -> dict[str, Any]:
    """The facts about the dialog's bound opportunity (and invoice), as plain data."""
    out: dict[str, Any] = {}
    opp_ref = bound.get("opportunity")
    if opp_ref and opp_ref.get("id"):
        opp = session.get(Opportunity, uuid.UUID(opp_ref["id"]))
        if opp is not None and opp.org_id == org_id:
            out.update(_opportunity_facts(session, opp, today))
    contact_ref = bound.get("contact")
    if contact_ref and contact_ref.get("id"):
        out["contact"] = next((c for c in out.get("contacts", [])
                               if c["id"] == contact_ref["id"]), {})
    inv_ref = bound.get("invoice")
    if inv_ref and inv_ref.get("id"):
        out["invoice"] = _invoice_facts(session, org_id, uuid.UUID(inv_ref["id"]), today)
    return out


def _opportunity_facts(session: Session, opp: Opportunity, today: date) -> dict[str, Any]:
    st = standing(session, opp)
    account = session.get(Account, opp.account_id)
    assert account is not None
    contacts = [{
        "id": str(c.id), "name": c.name, "title": c.title or "",
        "roles": list(c.buying_roles or []), "style": c.comm_style or "unknown",
        "stage": c.relationship_stage or "", "insider": c.insider_level or "none",
    } for c in st.contacts]
    roles: dict[str, list[str]] = {r: [] for r in PHASE_ROLE.values()}
    for c in st.contacts:
        for role in c.buying_roles or []:
            roles.setdefault(role, []).append(c.name)
    competitors = [{"name": n.competitor, "weaknesses": n.weaknesses or "",
                    "strengths": n.strengths or ""}
                   for n in session.scalars(select(CompetitorNote).where(
                       CompetitorNote.account_id == opp.account_id))]
    spin = {k: 0 for k in "SPIN"}
    for kind, count in session.execute(
            select(SpinEntry.kind, func.count()).where(SpinEntry.opportunity_id == opp.id)
            .group_by(SpinEntry.kind)):
        spin[kind] = count
    key = st.key_contact(opp.phase)
    decision_maker = st.key_contact("deliberation")
    return {
        "opportunity": {
            "id": str(opp.id), "name": opp.name, "account_id": str(opp.account_id),
            "account": st.account_name, "stage": opp.stage, "step": STEP_OF.get(opp.stage, 0),
            "phase": opp.phase or "", "product": opp.product or "",
            "currency": opp.currency or "", "amount": str(opp.amount or ""),
            "amount_text": money_text(opp.amount, opp.currency or "") if opp.amount else "",
            "lead_in": (opp.phase or "") in LEAD_IN,
            "has_requirements": opp.requirements_on is not None,
            "has_contract": opp.contract_on is not None,
            "outstanding": str(st.outstanding), "all_collected": st.has("all_collected"),
            "to_invoice": str(st.to_invoice),
            "owed": money_text(st.outstanding, opp.currency or ""),
            "open_invoices": sum(1 for i in st.invoices if i.outstanding > 0),
            "missing": st.missing(),
            # the dates the flows' date rules compare with (`not_before: opportunity.…`)
            **{name: getattr(opp, name).isoformat() if getattr(opp, name) else ""
               for name in ("contract_on", "produced_on", "delivered_on", "accepted_on",
                            "requirements_on")},
            "qualification": dict(opp.qualification or {}),
            "referral_note": opp.referral_note or "",
            "lost_reason": opp.lost_reason or "",
            "lost_details": dict(opp.lost_details or {}),
            # `reopen`: only a deal out of the funnel comes back, to where it left it
            "reopenable": opp.stage in REOPENABLE_STAGES,
            "reopen_to": reopen_stage(opp),
            "contract_review": dict(opp.contract_review or {}),
        },
        "account": {
            "name": account.name, "industry": account.industry or "",
            "nature": account.nature or "",
            # shown in texts as counts: 200,000 people, 18,000 pieces (not 18000.00)
            "size": f"{account.size_employees:,}" if account.size_employees else "",
            "business": account.business or "",
            "last_qty": f"{account.last_purchase_qty.normalize():,f}"
            if account.last_purchase_qty else "",
            "satisfaction": account.last_purchase_satisfaction or 0,
        },
        "contacts": contacts,
        "roles": roles,
        "key_contact": key.name if key else "",
        "trusted_contact": st.trusted_contact.name if st.trusted_contact else "",
        "competitors": competitors,
        "spin": spin,
        "spin_total": sum(spin.values()),
        "signals": list(st.signals),
        "close_suggestion": close_suggestion(
            st.signals, decision_maker.comm_style if decision_maker else None),
    }


def money_text(amount: Decimal, currency: str) -> str:
    """1,200,000 CNY (no cents when there are none)."""
    text = f"{amount:,.2f}"
    return f"{text[:-3] if text.endswith('.00') else text} {currency}".strip()


def close_suggestion(signals: Sequence[str], decision_maker_style: str | None) -> str:
    """Which of the three closing methods fits: the direct suggestion for a decisive tiger,
    the promotion when the customer bargains on price or terms, else the choice method."""
    if decision_maker_style == "tiger":
        return "direct"
    if PRICE_SIGNALS & set(signals):
        return "promotion"
    return "alternative"


def _invoice_facts(session: Session, org_id: uuid.UUID, invoice_id: uuid.UUID,
                   today: date) -> dict[str, Any]:
    inv = session.get(Invoice, invoice_id)
    if inv is None or inv.org_id != org_id:
        return {}
    paid = _dec(session.execute(select(func.coalesce(func.sum(Payment.amount), 0)).where(
        Payment.invoice_id == invoice_id)).scalar())
    done = list(session.scalars(select(CollectionAction.rung).where(
        CollectionAction.invoice_id == invoice_id).order_by(CollectionAction.done_at)))
    overdue = max((today - inv.due_on).days, 0)
    org = session.get(Org, org_id)
    outstanding = max(inv.amount - paid, ZERO)
    return {
        "id": str(inv.id), "number": inv.number, "amount": str(inv.amount),
        "currency": inv.currency, "paid": str(paid), "outstanding": str(outstanding),
        "owed": money_text(outstanding, inv.currency),
        "issued_on": inv.issued_on.isoformat(), "due_on": inv.due_on.isoformat(),
        "days_overdue": overdue, "rungs_done": done,
        "suggested_rung": suggested_rung(overdue, done, ladder_days(org)) or "",
    }
