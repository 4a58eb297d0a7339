"""Quick look-ups: `account`, `opp`, `who`, `pipeline`, `stalled`, `overdue`.

Each runs in the turn's unit of work (`CommandRequest.session`) with a handful of queries: the
fuzzy search (store/search.py), then the card's data in grouped queries, the health of the
opportunities shown (store/health.py) and the SPIN mix (store/analytics.py). Everything is
limited to what the asker may see (store/permissions.py); someone else's record answers exactly
like a name that does not exist.

Personal notes on contacts appear only when the asker writes in a private chat (a DM, the
console) and owns the contact or manages its owner; that message is marked `private=True` and
the look-up is written to the audit log. In a channel they never appear.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Callable, Sequence
from datetime import timedelta
from decimal import Decimal
from functools import cache
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, and_, case, func, or_, select
from sqlalchemy.orm import QueryableAttribute, Session

from bot.commands import SCOPE_WORDS, Claim, CommandRequest, Handler, Registry, names_people
from dialogs.flow import FLOWS_DIR, OptionDef, load_vocab
from dialogs.messages import Option, Outbound
from dialogs.render import Renderer
from store import health as health_mod
from store import privacy
from store.analytics import (
    SPIN_KINDS,
    RepStats,
    SpinMix,
    spin_mix,
    spin_mix_by_rep,
    team_report,
)
from store.enums import (
    OPEN_STAGES,
    BuyingRole,
    FunnelStage,
    InvoiceStatus,
    LostDetail,
    LostReason,
    QualificationCheck,
    Role,
)
from store.funnel import money_text, step_label
from store.models import (
    Account,
    BuyingSignal,
    CollectionAction,
    CompetitorNote,
    Contact,
    Identity,
    Invoice,
    Opportunity,
    Payment,
    User,
)
from store.permissions import Viewer, team_of, viewer
from store.search import Match, decide, search_accounts, search_opportunities

VOCAB_FILE = "vocab.yaml"
ROLE_ORDER = tuple(r.value for r in BuyingRole)
INSIDER_ORDER = ("none", "low", "mid", "high")
AGEING = ((1, 15, "1-15"), (16, 30, "16-30"), (31, 60, "31-60"), (61, 90, "61-90"),
          (91, None, "90+"))
SORTS = ("stage", "health", "amount", "close", "idle")
LIST_LIMIT = 15


# ---- small helpers ------------------------------------------------------------------------


@cache
def _vocab() -> dict[str, tuple[OptionDef, ...]]:
    return load_vocab(FLOWS_DIR / VOCAB_FILE)


def _vocab_label(kind: str, code: str | None, lang: str) -> str | None:
    if not code:
        return None
    try:
        options = _vocab().get(kind, ())
    except Exception:  # the vocabulary is checked at start-up; a label is not worth failing for
        options = ()
    for option in options:
        if option.value == code:
            return option.label(lang)
    return code


def _label(req: CommandRequest, group: str, code: str | None) -> str:
    """The short label of a code (`lk.stage.value` ...), or the code itself if unknown."""
    if not code:
        return "—"
    key = f"lk.{group}.{code}"
    catalog = req.renderer.catalogs.get(req.ctx.lang) or req.renderer.catalogs["en"]
    if key not in catalog and key not in req.renderer.catalogs["en"]:
        return code
    if group == "stage":
        return step_label(req.text(key), code)
    return req.text(key)


def money(amount: Decimal | None, currency: str | None) -> str:
    """As everywhere else (store.funnel.money_text): 1,200,000 CNY; "—" for none."""
    return "—" if amount is None else money_text(Decimal(amount), currency or "")


def _amounts(sums: dict[str, Decimal]) -> str:
    return " + ".join(money(v, c or None) for c, v in sorted(sums.items())) or "—"


def _viewer(req: CommandRequest) -> Viewer:
    s = req.speaker
    return viewer(req.session, s.org_id, s.user_id, s.role)


def _error(req: CommandRequest, key: str, **params: Any) -> list[Outbound]:
    return [Outbound(req.text(key, **params), kind="error")]


def reason_text(renderer: Renderer, lang: str, reason: health_mod.Reason) -> str:
    """A health reason as a sentence in `lang` (also for the digest)."""
    params = dict(reason.params)

    def label(group: str, code: Any) -> str:
        key = f"lk.{group}.{code}"
        return renderer.text(lang, key) if key in renderer.catalogs["en"] else str(code)

    if "missing" in params:
        params["missing"] = ", ".join(label("check", c) for c in params["missing"])
    for name, group in (("stage", "stage"), ("phase", "phase"), ("level", "insider"),
                        ("relationship", "rel")):
        if name in params:
            params[name] = label(group, params[name])
    return renderer.text(lang, f"health.{reason.code}", **params)


def _health_view(req: CommandRequest, found: health_mod.Health | None) -> dict[str, Any] | None:
    if found is None:
        return None
    return {"score": found.score,
            "problems": [reason_text(req.renderer, req.ctx.lang, r) for r in found.problems],
            "good": [reason_text(req.renderer, req.ctx.lang, r) for r in found.reasons
                     if r.ok]}


def _pick(req: CommandRequest, command: str, typed: str, matches: list[Match]) -> list[Outbound]:
    """Several matches: a short list of command lines to type (or tap)."""
    names = [m.name for m in matches]
    lines: list[dict[str, str | None]] = []
    options: list[Option] = []
    for m in matches:
        arg = m.name if names.count(m.name) == 1 else f"#{m.short_id}"
        line = f"{command} {arg}"
        lines.append({"line": line, "name": m.name, "context": m.context})
        options.append(Option(value=line, label=f"{m.name} — {m.context}" if m.context
                              else m.name))
    text = req.renderer.template("lookup_pick.j2", req.ctx.lang, typed=typed, lines=lines)
    return [Outbound(text, kind="pick", options=tuple(options))]


Search = Callable[[Session, Viewer, str], list[Match]]
#: how a record of each kind a look-up names is found, and the catalogs' word for the kind
_FINDERS: dict[type[Any], tuple[Search, str]] = {Account: (search_accounts, "account"),
                                                 Opportunity: (search_opportunities, "opp")}
_R = TypeVar("_R", Account, Opportunity)
Card = Callable[[CommandRequest, Viewer, Match, _R], Sequence[Outbound]]


def _on_record(command: str, model: type[_R]) -> Callable[[Card[_R]], Handler]:
    """A handler for `command <name>`: the card runs with the record `req.arg` names (its
    search match and its row); otherwise the reply is the usage, "none found" (also for
    someone else's record: the search sees only the viewer's) or a pick list."""
    search, kind = _FINDERS[model]

    def on_record(card: Card[_R]) -> Handler:
        def handler(req: CommandRequest) -> Sequence[Outbound]:
            who = _viewer(req)
            if not req.arg:
                return _error(req, f"lk.usage.{command}")
            matches = search(req.session, who, req.arg)
            chosen = decide(matches)
            if chosen is None and not matches:
                return _error(req, f"lk.none.{kind}", typed=req.arg[:80])
            if chosen is None:
                return _pick(req, command, req.arg[:80], matches)
            record = req.session.get(model, chosen.id)
            if record is None:  # gone since the search
                return _error(req, f"lk.none.{kind}", typed=req.arg[:80])
            return card(req, who, chosen, record)

        return handler

    return on_record


def _personal_allowed(req: CommandRequest, who: Viewer, *owners: uuid.UUID | None) -> bool:
    return req.inbound.chat == "private" and who.may_see_personal(*owners)


def _audit_personal(req: CommandRequest, command: str, contact_ids: list[uuid.UUID]) -> None:
    for contact_id in contact_ids:
        privacy.audit(req.session, org_id=req.speaker.org_id, user_id=req.speaker.user_id,
                      action="view_personal", subject_type="contact", subject_id=contact_id,
                      now=req.now, detail={"command": command,
                                           "platform": req.inbound.platform})


def _contacts_of(session: Session, account: Account) -> Sequence[Contact]:
    return session.execute(
        select(Contact).where(Contact.org_id == account.org_id,
                              Contact.account_id == account.id).order_by(Contact.name)
    ).scalars().all()


def _contacts_view(req: CommandRequest, who: Viewer, account: Account, rows: Sequence[Contact],
                   command: str, *, key_only: bool
                   ) -> tuple[list[dict[str, Any]], list[uuid.UUID], bool, str | None]:
    """Contacts `rows` of an account ordered by buying role; which personal notes were shown;
    whether notes exist that this chat may not show; the insider level reached (over all)."""
    names = {c.id: c.name for c in rows}
    shown: list[uuid.UUID] = []
    hidden = False
    out = []
    levels = [c.insider_level for c in rows if c.insider_level in INSIDER_ORDER]
    insider = max(levels, key=INSIDER_ORDER.index) if levels else None
    for c in rows:
        roles = [r for r in ROLE_ORDER if r in (c.buying_roles or [])]
        if key_only and not roles:
            continue
        personal = None
        if c.personal_notes:
            if _personal_allowed(req, who, c.owner_id, account.owner_id):
                personal = c.personal_notes
                shown.append(c.id)
            elif who.may_see_personal(c.owner_id, account.owner_id):
                hidden = True
        out.append({
            "id": c.id, "name": c.name, "title": c.title,
            "roles": [_label(req, "role", r) for r in roles], "role_codes": roles,
            "rel": _label(req, "rel", c.relationship_stage) if c.relationship_stage else None,
            "style": _label(req, "style", c.comm_style)
            if c.comm_style and c.comm_style != "unknown" else None,
            "insider": _label(req, "insider", c.insider_level)
            if c.insider_level and c.insider_level != "none" else None,
            "reports_to": names.get(c.reports_to_id) if c.reports_to_id else None,
            "work_notes": c.work_notes, "personal": personal,
            "rank": min((ROLE_ORDER.index(r) for r in roles), default=len(ROLE_ORDER)),
        })
    if req.inbound.shared:  # posted for everyone in a channel: who they are, not our read
        for row in out:
            row.update(rel=None, style=None, insider=None, work_notes=None, personal=None)
        shown, hidden, insider = [], False, None
    out.sort(key=lambda c: (c["rank"], c["name"]))
    if shown:
        _audit_personal(req, command, shown)
    return out, shown, hidden, insider


def _open_invoices(req: CommandRequest, where: ColumnElement[bool]) -> list[dict[str, Any]]:
    paid = (select(Payment.invoice_id, func.sum(Payment.amount).label("paid"))
            .group_by(Payment.invoice_id).subquery())
    rows = req.session.execute(
        select(Invoice.number, Invoice.amount, Invoice.currency, Invoice.due_on,
               func.coalesce(paid.c.paid, 0))
        .outerjoin(paid, paid.c.invoice_id == Invoice.id)
        .where(where, Invoice.status == InvoiceStatus.OPEN).order_by(Invoice.due_on))
    today = req.ctx.today
    out = []
    for number, amount, currency, due_on, got in rows:
        outstanding = Decimal(str(amount)) - Decimal(str(got))
        out.append({"number": number, "outstanding": money(outstanding, currency),
                    "due": due_on.isoformat(),
                    "overdue": max(0, (today - due_on).days)})
    return out


def _competitors(session: Session, account_id: uuid.UUID) -> list[dict[str, Any]]:
    return [{"name": n.competitor, "strengths": n.strengths, "weaknesses": n.weaknesses}
            for n in session.execute(select(CompetitorNote).where(
                CompetitorNote.account_id == account_id).order_by(CompetitorNote.competitor)
            ).scalars()]


def _owner_names(session: Session, ids: set[uuid.UUID]) -> dict[uuid.UUID, str]:
    if not ids:
        return {}
    return {user_id: name for user_id, name in session.execute(
        select(User.id, User.display_name).where(User.id.in_(sorted(ids))))}


def _with_account_names(session: Session, opps: Sequence[Opportunity]
                        ) -> list[tuple[Opportunity, str | None]]:
    """The opportunities of a list with their customers' names. Read after the list is cut to
    its few rows: joining first would read every account of the org before the LIMIT."""
    ids = sorted({o.account_id for o in opps})
    names: dict[uuid.UUID, str] = {}
    if ids:
        names = {i: n for i, n in session.execute(
            select(Account.id, Account.name).where(Account.id.in_(ids)))}
    return [(o, names.get(o.account_id)) for o in opps]


def _lost_line(req: CommandRequest, o: Opportunity) -> str | None:
    """Why a lost deal was lost, who won it, what to learn (on the cards)."""
    if o.stage != FunnelStage.LOST:
        return None
    details = o.lost_details or {}
    reason = req.text(f"lost.reason.{o.lost_reason}") if o.lost_reason in set(LostReason) \
        else o.lost_reason or "—"
    parts = [str(req.text("lost.card.line", reason=reason,
                          note=details.get(LostDetail.NOTE) or ""))]
    if details.get(LostDetail.COMPETITOR):
        parts.append(str(req.text("lost.card.won_by", competitor=details[LostDetail.COMPETITOR])))
    if details.get(LostDetail.LESSON):
        parts.append(str(req.text("lost.card.lesson", lesson=details[LostDetail.LESSON])))
    return " · ".join(parts)


def _opp_line(req: CommandRequest, o: Opportunity, found: health_mod.Health | None,
              owner: str | None = None, account: str | None = None) -> dict[str, Any]:
    finished = o.stage not in OPEN_STAGES
    return {"name": o.name, "account": account, "stage": _label(req, "stage", o.stage),
            # a deal out of the funnel: its buying process and next step are over
            "finished": finished, "lost": _lost_line(req, o),
            "phase": req.text("lost.card.closed") if finished and o.phase
            else _label(req, "phase", o.phase) if o.phase else None,
            "amount": money(o.amount, o.currency or "CNY") if o.amount is not None else None,
            "close": o.expected_close.isoformat() if o.expected_close else None,
            "next_step": o.next_step,
            "next_due": o.next_step_due.isoformat() if o.next_step_due else None,
            "owner": owner, "health": _health_view(req, found)}


def _private_note(req: CommandRequest, shown: list[uuid.UUID], hidden: bool) -> str | None:
    if hidden and not shown:
        return req.text("lk.personal_hidden")
    return None


def _account_view(req: CommandRequest, who: Viewer, account: Account, people: Sequence[Contact],
                  command: str, invoices: ColumnElement[bool]) -> tuple[dict[str, Any], bool]:
    """What the account and opp cards show alike: the key contacts, the insider level reached,
    the competitors, the open invoices (those `invoices` selects), the note on personal notes
    this chat may not show; and whether personal notes are shown (the card is private)."""
    contacts, shown, hidden, insider = _contacts_view(req, who, account, people, command,
                                                      key_only=True)
    return {
        "contacts": contacts,
        "insider": _label(req, "insider", insider) if insider else None,
        "competitors": _competitors(req.session, account.id),
        "invoices": _open_invoices(req, invoices),
        "personal_hidden": _private_note(req, shown, hidden),
    }, bool(shown)


# ---- account --------------------------------------------------------------------------------


@_on_record("account", Account)
def account_card(req: CommandRequest, who: Viewer, _chosen: Match, account: Account
                 ) -> Sequence[Outbound]:
    session = req.session
    opps = session.execute(select(Opportunity).where(Opportunity.account_id == account.id)
                           .order_by(Opportunity.stage_entered_at.desc())).scalars().all()
    open_opps = [o for o in opps if o.stage in OPEN_STAGES]
    people = _contacts_of(session, account)
    healths = health_mod.health_of_rows(session, account.org_id, open_opps, contacts=people,
                                        now=req.now, today=req.ctx.today)
    owners = _owner_names(session, {account.owner_id, *(o.owner_id for o in opps)})
    furthest = max((o.stage for o in open_opps), key=lambda s: health_mod.STAGE_INDEX[s],
                   default=None)
    common, private = _account_view(req, who, account, people, "account",
                                    Invoice.account_id == account.id)
    view = {
        "name": account.name,
        "status": _label(req, "status", account.status),
        "owner": owners.get(account.owner_id),
        "industry": _vocab_label("industry", account.industry, req.ctx.lang),
        "nature": _vocab_label("nature", account.nature, req.ctx.lang),
        "size": f"{account.size_employees:,}" if account.size_employees else None,
        "last_purchase": money(account.last_purchase_amount,
                               account.last_purchase_currency or "CNY")
        if account.last_purchase_amount is not None else None,
        "satisfaction": account.last_purchase_satisfaction,
        "step": _label(req, "stage", furthest) if furthest else None,
        "opps": [_opp_line(req, o, healths.get(o.id), owners.get(o.owner_id)) for o in open_opps],
        "closed": [{"name": o.name, "stage": _label(req, "stage", o.stage),
                    "lost": _lost_line(req, o)}
                   for o in opps if o.stage not in OPEN_STAGES],
        **common,
    }
    text = req.renderer.template("lookup_account.j2", req.ctx.lang, a=view)
    return [Outbound(text, kind="card", private=private, record=("account", str(account.id)))]


# ---- opp ------------------------------------------------------------------------------------


@_on_record("opp", Opportunity)
def opp_card(req: CommandRequest, who: Viewer, _chosen: Match, opp: Opportunity
             ) -> Sequence[Outbound]:
    session = req.session
    account = session.get(Account, opp.account_id)
    assert account is not None
    people = _contacts_of(session, account)
    found = health_mod.health_of_rows(session, opp.org_id, [opp], contacts=people,
                                      now=req.now, today=req.ctx.today).get(opp.id)
    owners = _owner_names(session, {opp.owner_id})
    mix = spin_mix(session, opp.org_id, opportunity_id=opp.id)
    signals = session.execute(
        select(BuyingSignal.signal, BuyingSignal.note, BuyingSignal.observed_at)
        .where(BuyingSignal.opportunity_id == opp.id)
        .order_by(BuyingSignal.observed_at.desc())).all()
    common, private = _account_view(req, who, account, people, "opp",
                                    Invoice.opportunity_id == opp.id)
    checks = [{"label": _label(req, "check", c),
               "ok": health_mod.passed((opp.qualification or {}).get(c), c, req.ctx.today)}
              for c in QualificationCheck]
    view = {
        **_opp_line(req, opp, found, owners.get(opp.owner_id), account.name),
        "open": opp.stage in OPEN_STAGES,
        "checks": checks,
        "spin": {"s": mix.s, "p": mix.p, "i": mix.i, "n": mix.n, "total": mix.total,
                 "feedback": req.text(f"spin.fb.{mix.feedback}")},
        "signals": [{"signal": _label(req, "signal", s), "note": n,
                     "date": at.date().isoformat() if at else None}
                    for s, n, at in signals[:3]],
        "signal_count": len(signals),
        **common,
    }
    text = req.renderer.template("lookup_opp.j2", req.ctx.lang, o=view)
    return [Outbound(text, kind="card", private=private)]


# ---- who ------------------------------------------------------------------------------------


@_on_record("who", Account)
def who_map(req: CommandRequest, who: Viewer, _chosen: Match, account: Account
            ) -> Sequence[Outbound]:
    contacts, shown, hidden, _insider = _contacts_view(
        req, who, account, _contacts_of(req.session, account), "who", key_only=False)
    roles = []
    for role in ROLE_ORDER:
        roles.append({"label": _label(req, "role", role), "hint": req.text(f"lk.who.{role}"),
                      "contacts": [c for c in contacts if role in c["role_codes"]]})
    others = [c for c in contacts if not c["role_codes"]]
    text = req.renderer.template("lookup_who.j2", req.ctx.lang, account=account.name, roles=roles,
                                 others=others, personal_hidden=_private_note(req, shown,
                                                                              hidden))
    return [Outbound(text, kind="card", private=bool(shown))]


# ---- whose data: @rep | team ------------------------------------------------------------------


class _Scope:
    def __init__(self, owners: frozenset[uuid.UUID] | None, label: str) -> None:
        self.owners = owners
        self.label = label

    def clause(self, column: ColumnElement[Any] | QueryableAttribute[Any]
               ) -> ColumnElement[bool]:
        if self.owners is None:
            return column.is_not(None)
        return column.in_(sorted(self.owners))

    def owned(self, owner: QueryableAttribute[Any], org: QueryableAttribute[Any],
              org_id: uuid.UUID) -> ColumnElement[bool]:
        """Rows of these owners. Users belong to one org, so a list of owners needs no org
        filter — and without it SQLite reads the owner index instead of the whole org."""
        if self.owners is None:
            return org == org_id
        return owner.in_(sorted(self.owners))


def _find_user(session: Session, org_id: uuid.UUID, name: str) -> uuid.UUID | None:
    key = name.casefold()
    rows = session.execute(
        select(User.id, User.display_name, Identity.external_id, Identity.username)
        .outerjoin(Identity, Identity.user_id == User.id).where(User.org_id == org_id)).all()
    exact = {r[0] for r in rows if key in {(r[1] or "").casefold(), (r[2] or "").casefold(),
                                          (r[3] or "").casefold()}}
    if len(exact) == 1:
        return exact.pop()
    partial = {r[0] for r in rows if key in (r[1] or "").casefold()}
    return partial.pop() if len(partial) == 1 else None


def _scope(req: CommandRequest, who: Viewer, tokens: list[str]
           ) -> tuple[_Scope | None, list[str]]:
    """The owners a pipeline-like command covers; None when the asker may not see them."""
    rest: list[str] = []
    scope = _Scope(frozenset({who.user_id}), req.text("lk.scope.mine"))
    for token in tokens:
        if token.startswith("@") and len(token) > 1:
            user_id = _find_user(req.session, who.org_id, token[1:])
            if user_id is None or not who.can_see(user_id):
                return None, rest
            name = req.session.execute(select(User.display_name).where(User.id == user_id)
                                       ).scalar()
            scope = _Scope(frozenset({user_id}), str(name))
        elif token.casefold() in SCOPE_WORDS:
            if who.role == Role.REP:
                scope = _Scope(frozenset({who.user_id}), req.text("lk.scope.mine"))
            else:
                scope = _Scope(who.visible_owners, req.text("lk.scope.team"))
        else:
            rest.append(token)
    return scope, rest


ScopedCard = Callable[[CommandRequest, Viewer, _Scope, list[str]], Sequence[Outbound]]


def _on_scope(*default: str) -> Callable[[ScopedCard], Handler]:
    """A handler for `command [@rep|team] ...`: the card runs with the owners the argument
    names (the words `default` when there is no argument) and the words left over; an owner
    the asker may not see is "not yours"."""

    def on_scope(card: ScopedCard) -> Handler:
        def handler(req: CommandRequest) -> Sequence[Outbound]:
            who = _viewer(req)
            scope, rest = _scope(req, who, req.arg.split() or list(default))
            if scope is None:
                return _error(req, "lk.not_yours")
            return card(req, who, scope, rest)

        return handler

    return on_scope


_SORT_ALIASES = {"stage": "stage", "阶段": "stage", "health": "health", "健康": "health",
                 "amount": "amount", "金额": "amount", "close": "close", "成交": "close",
                 "idle": "idle", "activity": "idle", "停滞": "idle", "活动": "idle"}


@_on_scope()
def pipeline(req: CommandRequest, who: Viewer, scope: _Scope, rest: list[str]
             ) -> Sequence[Outbound]:
    sort = "stage"
    for token in rest:
        if token.casefold() not in _SORT_ALIASES:
            return _error(req, "lk.bad_sort", typed=token[:40], sorts=", ".join(SORTS))
        sort = _SORT_ALIASES[token.casefold()]
    session, org_id = req.session, who.org_id
    where = and_(scope.owned(Opportunity.owner_id, Opportunity.org_id, org_id),
                 Opportunity.stage.in_(sorted(OPEN_STAGES)))
    funnel: dict[str, dict[str, Any]] = {}
    totals: dict[str, Decimal] = defaultdict(Decimal)
    count = 0
    for stage, currency, n, amount in session.execute(
            select(Opportunity.stage, Opportunity.currency, func.count(),
                   func.sum(Opportunity.amount))
            .where(where).group_by(Opportunity.stage, Opportunity.currency)):
        row = funnel.setdefault(stage, {"count": 0, "sums": defaultdict(Decimal)})
        row["count"] += n
        count += n
        if amount is not None:
            row["sums"][currency or "CNY"] += Decimal(str(amount))
            totals[currency or "CNY"] += Decimal(str(amount))
    widest = max((r["count"] for r in funnel.values()), default=0)
    steps = [{"label": _label(req, "stage", s), "count": funnel[s]["count"],
              "amount": _amounts(funnel[s]["sums"]),
              "bar": "█" * max(1, round(10 * funnel[s]["count"] / widest))}
             for s in health_mod.STAGE_ORDER if s in funnel]
    idle_since = func.coalesce(Opportunity.last_activity_at, Opportunity.stage_entered_at,
                               Opportunity.created_at)
    base = select(Opportunity).where(where)
    if sort == "health":
        healths = health_mod.health_of(session, org_id, select(Opportunity.id).where(where),
                                       now=req.now, today=req.ctx.today)
        worst = sorted(healths.values(), key=lambda h: (h.score, str(h.opportunity_id)))
        ids = [h.opportunity_id for h in worst[:LIST_LIMIT]]
        order = {i: n for n, i in enumerate(ids)}
        opps = sorted(session.execute(base.where(Opportunity.id.in_(ids))).scalars(),
                      key=lambda o: order[o.id])
    else:
        ordering: list[Any] = {  # type: ignore[assignment]
            "stage": [Opportunity.stage_entered_at.desc()],
            "amount": [Opportunity.amount.desc().nulls_last()],
            "close": [Opportunity.expected_close.asc().nulls_last()],
            "idle": [idle_since.asc()],
        }[sort]
        if sort == "stage":
            # funnel order, furthest first
            ordering = [case({s: i for i, s in enumerate(health_mod.STAGE_ORDER)},
                             value=Opportunity.stage).desc(),
                        Opportunity.amount.desc().nulls_last()]
        opps = list(session.execute(base.order_by(*ordering, Opportunity.id)
                                    .limit(LIST_LIMIT)).scalars())
        healths = health_mod.health_of_rows(session, org_id, opps, now=req.now,
                                            today=req.ctx.today)
    rows = _with_account_names(session, opps)
    owners = _owner_names(session, {o.owner_id for o in opps})
    show_owner = scope.owners is None or len(scope.owners) > 1
    items = []
    for opp, account_name in rows:
        line = _opp_line(req, opp, healths.get(opp.id),
                         owners.get(opp.owner_id) if show_owner else None, account_name)
        items.append(line)
    text = req.renderer.template(
        "lookup_pipeline.j2", req.ctx.lang, scope=scope.label, steps=steps, count=count,
        total=_amounts(totals), items=items, more=max(0, count - len(items)),
        sort=req.text(f"lk.sort.{sort}"))
    return [Outbound(text, kind="card")]


# ---- stalled ----------------------------------------------------------------------------------


@_on_scope("team")
def stalled(req: CommandRequest, who: Viewer, scope: _Scope, _rest: list[str]
            ) -> Sequence[Outbound]:
    session, org_id = req.session, who.org_id
    limits = health_mod.stalled_days(session, org_id)
    idle_since = func.coalesce(Opportunity.last_activity_at, Opportunity.stage_entered_at,
                               Opportunity.created_at)
    idle = or_(*[and_(Opportunity.stage == stage,
                      idle_since < req.now - timedelta(days=limits.get(stage, 21)))
                 for stage in sorted(OPEN_STAGES)])
    late = Opportunity.next_step_due < req.ctx.today
    where = and_(scope.owned(Opportunity.owner_id, Opportunity.org_id, org_id),
                 Opportunity.stage.in_(sorted(OPEN_STAGES)), or_(idle, late))
    total = session.execute(select(func.count()).select_from(Opportunity).where(where)).scalar()
    opps = list(session.execute(
        select(Opportunity).where(where).order_by(idle_since.asc(), Opportunity.id)
        .limit(LIST_LIMIT * 2)).scalars())
    owners = _owner_names(session, {o.owner_id for o in opps})
    items = []
    for opp, account_name in _with_account_names(session, opps):
        since = opp.last_activity_at or opp.stage_entered_at or opp.created_at
        days = max(0, (req.now - since).days) if since else 0
        limit = limits.get(opp.stage, 21)
        late_days = (req.ctx.today - opp.next_step_due).days if (
            opp.next_step_due and opp.next_step_due < req.ctx.today) else 0
        why = []
        if days > limit:
            why.append(req.text("lk.stalled.idle", days=days, limit=limit))
        if late_days:
            why.append(req.text("lk.stalled.late", days=late_days))
        items.append({"name": opp.name, "account": account_name,
                      "stage": _label(req, "stage", opp.stage), "why": "; ".join(why),
                      "owner": owners.get(opp.owner_id), "next_step": opp.next_step})
    text = req.renderer.template("lookup_stalled.j2", req.ctx.lang, scope=scope.label,
                                 items=items, total=int(total or 0),
                                 more=max(0, int(total or 0) - len(items)))
    return [Outbound(text, kind="card")]


# ---- overdue ----------------------------------------------------------------------------------


def _bucket(days: int) -> str:
    for low, high, label in AGEING:
        if days >= low and (high is None or days <= high):
            return label
    return AGEING[-1][2]


@_on_scope("team")
def overdue(req: CommandRequest, who: Viewer, scope: _Scope, _rest: list[str]
            ) -> Sequence[Outbound]:
    session, org_id, today = req.session, who.org_id, req.ctx.today
    paid = (select(Payment.invoice_id, func.sum(Payment.amount).label("paid"))
            .where(Payment.org_id == org_id).group_by(Payment.invoice_id).subquery())
    owner = func.coalesce(Opportunity.owner_id, Account.owner_id)
    rows = session.execute(
        select(Invoice.id, Invoice.number, Invoice.amount, Invoice.currency, Invoice.due_on,
               func.coalesce(paid.c.paid, 0), Account.name, owner)
        .join(Account, Account.id == Invoice.account_id)
        .outerjoin(Opportunity, Opportunity.id == Invoice.opportunity_id)
        .outerjoin(paid, paid.c.invoice_id == Invoice.id)
        .where(Invoice.org_id == org_id, Invoice.status == InvoiceStatus.OPEN,
               Invoice.due_on < today, scope.clause(owner))
        .order_by(Invoice.due_on, Invoice.number)).all()
    buckets: dict[str, dict[str, Any]] = {label: {"label": label, "count": 0,
                                                  "sums": defaultdict(Decimal)}
                                          for _l, _h, label in AGEING}
    totals: dict[str, Decimal] = defaultdict(Decimal)
    items = []
    for invoice_id, number, amount, currency, due_on, got, account_name, owner_id in rows:
        outstanding = Decimal(str(amount)) - Decimal(str(got))
        if outstanding <= 0:
            continue
        days = (today - due_on).days
        bucket = buckets[_bucket(days)]
        bucket["count"] += 1
        bucket["sums"][currency] += outstanding
        totals[currency] += outstanding
        items.append({"id": invoice_id, "number": number, "account": account_name,
                      "outstanding": money(outstanding, currency), "days": days,
                      "owner_id": owner_id, "bucket": bucket["label"]})
    shown = items[:LIST_LIMIT * 2]
    last_rung: dict[uuid.UUID, str] = {}
    if shown:
        for invoice_id, rung in session.execute(
                select(CollectionAction.invoice_id, CollectionAction.rung)
                .where(CollectionAction.invoice_id.in_([i["id"] for i in shown]))
                .order_by(CollectionAction.done_at)):
            last_rung[invoice_id] = rung
    owners = _owner_names(session, {i["owner_id"] for i in shown})
    for item in shown:
        latest = last_rung.get(item["id"])
        item["last"] = (req.text("lk.overdue.last", rung=_label(req, "rung", latest)) if latest
                        else req.text("lk.overdue.no_action"))
        item["owner"] = owners.get(item["owner_id"])
    text = req.renderer.template(
        "lookup_overdue.j2", req.ctx.lang, scope=scope.label,
        buckets=[{"label": b["label"], "count": b["count"], "amount": _amounts(b["sums"])}
                 for b in buckets.values() if b["count"]],
        total=_amounts(totals), count=len(items), items=shown,
        more=max(0, len(items) - len(shown)))
    return [Outbound(text, kind="card")]


# ---- analytics --------------------------------------------------------------------------------


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{round(100 * value)}%"


def _rep_view(req: CommandRequest, stats: RepStats) -> dict[str, Any]:
    steps = []
    for stage in health_mod.STAGE_ORDER:
        flow = stats.steps.get(stage)
        stalled_here = stats.stalled_by_step.get(stage, 0)
        if flow is None and not stalled_here:
            continue
        steps.append({"label": _label(req, "stage", stage),
                      "conversion": _pct(flow.conversion if flow else None),
                      "exits": flow.exits if flow else 0,
                      "days": f"{flow.mean_days:.0f}" if flow and flow.mean_days is not None
                      else "—",
                      "stalled": stalled_here})
    mix = stats.spin
    return {"name": stats.name,
            "spin": {k: _pct(mix.share(k)) if mix.total else "—" for k in "SPIN"},
            "spin_total": mix.total, "steps": steps, "open": stats.open_total,
            "stalled": stats.stalled_total,
            "dso": f"{stats.dso:.0f}" if stats.dso is not None else "—",
            "days_to_pay": f"{stats.mean_days_to_pay:.0f}"
            if stats.mean_days_to_pay is not None else "—"}


def _people(session: Session, who: Viewer, scope: _Scope
            ) -> tuple[set[uuid.UUID], set[uuid.UUID]]:
    """The users `scope` covers, and whom they are compared with: one rep with their manager's
    team, a team with itself."""
    if scope.owners is None:  # an admin's `team`: everyone active in the org
        users = set(session.execute(select(User.id).where(User.org_id == who.org_id,
                                                          User.active.is_(True))).scalars())
    else:
        users = set(scope.owners)
    compare = set(users)
    if len(users) == 1:
        manager = session.execute(select(User.manager_id).where(User.id == next(iter(users)))
                                  ).scalar()
        if manager is not None:
            compare |= set(team_of(session, manager)) - {manager}
    return users, compare


def analytics(req: CommandRequest) -> Sequence[Outbound]:
    who = _viewer(req)
    tokens = req.arg.split()
    days = 30
    rest = []
    for token in tokens:
        if token.isdigit():
            days = int(token)
            if not 1 <= days <= 366:
                return _error(req, "lk.analytics.bad_days", typed=token[:10])
        else:
            rest.append(token)
    default = [] if rest else (["team"] if who.role != Role.REP else [])
    scope, leftover = _scope(req, who, rest + default)
    if scope is None:
        return _error(req, "lk.not_yours")
    if leftover:
        return _error(req, "lk.analytics.usage")
    session = req.session
    users, compare = _people(session, who, scope)
    start = req.now - timedelta(days=days)
    report = team_report(session, who.org_id, compare, start=start, end=req.now, now=req.now)
    reps = []
    for stats in report.reps:
        if stats.user_id not in users:
            continue
        if not (stats.spin.total or stats.steps or stats.open_total or stats.invoiced
                or stats.receivables):
            continue  # nothing to say about them (e.g. a manager who sells nothing)
        view = _rep_view(req, stats)
        view["advice"] = [req.text(f"coach.{a.code}", **{
            k: (_label(req, "stage", v) if k == "stage" else v) for k, v in a.params.items()})
            for a in report.advice.get(stats.user_id, [])]
        reps.append(view)
    text = req.renderer.template("lookup_analytics.j2", req.ctx.lang, scope=scope.label,
                                 days=days, reps=reps, team=_rep_view(req, report.team))
    return [Outbound(text, kind="card")]


# ---- spinmix ----------------------------------------------------------------------------------

SPINMIX_DAYS = 30


def _mix_view(req: CommandRequest, name: str, mix: SpinMix) -> dict[str, Any]:
    return {"name": name, "total": mix.total,
            "counts": {k: mix.count(k) for k in SPIN_KINDS},
            "shares": {k: _pct(mix.share(k)) if mix.total else "—" for k in SPIN_KINDS},
            "feedback": req.text(f"spin.fb.{mix.feedback}")}


def spinmix(req: CommandRequest) -> Sequence[Outbound]:
    """`spinmix [opp name|@rep|team]`: the SPIN mix of one opportunity, or of a rep (the asker
    by default) or a team over the last 30 days, compared with the team."""
    if names_people(req.arg) or not req.arg.split():
        return _spinmix_people(req)
    return _spinmix_opp(req)


@_on_record("spinmix", Opportunity)
def _spinmix_opp(req: CommandRequest, who: Viewer, chosen: Match, opp: Opportunity
                 ) -> Sequence[Outbound]:
    if not who.can_see(opp.owner_id):  # the search already sees only theirs
        return _error(req, "lk.none.opp", typed=req.arg[:80])
    mix = spin_mix(req.session, opp.org_id, opportunity_id=opp.id)
    text = req.renderer.template("lookup_spinmix.j2", req.ctx.lang,
                                 title=req.text("lk.spinmix.opp", name=opp.name,
                                                account=chosen.context or ""),
                                 rows=[_mix_view(req, opp.name, mix)], team=None)
    return [Outbound(text, kind="card")]


@_on_scope()
def _spinmix_people(req: CommandRequest, who: Viewer, scope: _Scope, _rest: list[str]
                    ) -> Sequence[Outbound]:
    session = req.session
    users, compare = _people(session, who, scope)
    mixes = spin_mix_by_rep(session, who.org_id, compare, start=req.now - timedelta(
        days=SPINMIX_DAYS), end=req.now)
    names = _owner_names(session, users)
    shown = [u for u in users if len(users) == 1 or mixes.get(u, SpinMix()).total]
    rows = sorted((_mix_view(req, names.get(u, "?"), mixes.get(u, SpinMix())) for u in shown),
                  key=lambda r: (-r["total"], r["name"]))
    team = sum((mixes.get(u, SpinMix()) for u in compare), SpinMix())
    text = req.renderer.template("lookup_spinmix.j2", req.ctx.lang,
                                 title=req.text("lk.spinmix.people", scope=scope.label,
                                                days=SPINMIX_DAYS),
                                 rows=rows, team=_mix_view(req, req.text("lk.analytics.team"),
                                                           team))
    return [Outbound(text, kind="card")]


def register(registry: Registry) -> None:
    registry.add("account", account_card, order=40)
    registry.add("opp", opp_card, order=41)
    registry.add("who", who_map, order=42)
    registry.add("pipeline", pipeline, order=43)
    registry.add("stalled", stalled, order=44)
    registry.add("overdue", overdue, order=45)
    registry.add("analytics", analytics, order=46)
    # `spin @rep` / `spin team` (in any language) is this look-up rather than the SPIN dialog
    registry.add("spinmix", spinmix, order=47, claims=(Claim("spin", names_people),))

