"""The demo company (METHODOLOGY.md's worked example), loaded from `company.yaml`.

`load_demo(session, now=...)` takes a `Session` and never commits: the caller runs it as one
unit of work with `await db.run(load_demo, now=now)`. Dates in the data are relative to `now`,
so the pipeline, stalled deals and overdue invoices always look current. Ids are deterministic
and an earlier demo org is deleted first (the database cascades), so loading is idempotent.
"""

from __future__ import annotations

import copy
import functools
import uuid
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import Date, delete, or_, select
from sqlalchemy.orm import Session

from store.enums import Platform
from store.models import (
    Account,
    Activity,
    Amount,
    Base,
    BuyingSignal,
    CollectionAction,
    CompetitorNote,
    Contact,
    DigestSubscription,
    Identity,
    Invoice,
    Need,
    Opportunity,
    Org,
    Payment,
    Proposal,
    SpinEntry,
    TeamChannel,
    User,
    name_key,
)

DATA_FILE = Path(__file__).with_name("company.yaml")
NAMESPACE = uuid.UUID("6f0c1e52-3d4b-5a8e-9c1f-5a1e5c0ac4de")
DEFAULT_CURRENCY = "CNY"

# keys of a YAML record that are structure or references, never copied into a column
_STRUCTURE = frozenset(
    {
        "key",
        "owner",
        "manager",
        "contact",
        "contacts",
        "opportunity",
        "opportunities",
        "competitor_notes",
        "invoices",
        "payments",
        "collection_actions",
        "needs",
        "children",
        "spin",
        "signals",
        "proposals",
        "reports_to",
        "done_by",
        "bound_by",
        "user",
        "account",
    }
)


class DemoDataError(ValueError):
    """`company.yaml` refers to something that does not exist; the message says what."""


@dataclass(frozen=True)
class DemoSummary:
    """What one load wrote, per kind of row."""

    org_id: uuid.UUID
    users: int = 0
    identities: int = 0
    team_channels: int = 0
    digest_subscriptions: int = 0
    accounts: int = 0
    contacts: int = 0
    competitor_notes: int = 0
    opportunities: int = 0
    needs: int = 0
    spin_entries: int = 0
    buying_signals: int = 0
    proposals: int = 0
    invoices: int = 0
    payments: int = 0
    collection_actions: int = 0
    activities: int = 0


def demo_id(kind: str, key: str) -> uuid.UUID:
    """The deterministic id of a demo row."""
    return uuid.uuid5(NAMESPACE, f"demo:{kind}:{key}")


@functools.cache
def _data() -> dict[str, Any]:
    loaded = yaml.safe_load(DATA_FILE.read_text(encoding="utf-8"))
    if not isinstance(loaded, dict):
        raise DemoDataError(f"{DATA_FILE.name} must be a mapping")
    return loaded


def load_demo(session: Session, *, now: datetime) -> DemoSummary:
    """Replace the demo org with a fresh copy whose dates are relative to `now`."""
    if now.tzinfo is None:
        raise ValueError("load_demo needs an aware `now` (dates are relative to it)")
    return _Loader(session, now, copy.deepcopy(_data())).run()


class _Loader:
    def __init__(self, session: Session, now: datetime, data: dict[str, Any]) -> None:
        self.session = session
        self.now = now
        self.data = data
        self.org_id = demo_id("org", str(data["org"]["external_id"]))
        self.counts: Counter[str] = Counter()
        self.known: dict[str, set[str]] = {}

    def run(self) -> DemoSummary:
        self._remove_previous()
        org = self.data["org"]
        self.session.add(Org(id=self.org_id, **self._values(Org, org)))
        self.session.flush()
        self._people()
        for account in self.data.get("accounts", []):
            self._account(account)
        for i, item in enumerate(self.data.get("activities", [])):
            self._add(
                "activities",
                Activity(
                    id=demo_id("activity", str(i)),
                    user_id=self._ref("user", item.get("user")),
                    account_id=self._ref("account", item.get("account")),
                    opportunity_id=self._ref("opportunity", item.get("opportunity")),
                    contact_id=self._ref("contact", item.get("contact")),
                    **self._values(Activity, item),
                ),
            )
        self.session.flush()
        return DemoSummary(org_id=self.org_id, **self.counts)

    # --- helpers --------------------------------------------------------------------------

    def _remove_previous(self) -> None:
        org = self.data["org"]
        match = or_(
            Org.id == self.org_id,
            (Org.platform == org["platform"]) & (Org.external_id == str(org["external_id"])),
        )
        old_ids = set(self.session.scalars(select(Org.id).where(match)))
        if not old_ids:
            return
        # objects of the old org still in this session's identity map would clash with the new
        # rows of the same ids; the database cascade removes the rows themselves
        for obj in list(self.session.identity_map.values()):
            owner = obj.id if isinstance(obj, Org) else getattr(obj, "org_id", None)
            if owner in old_ids:
                self.session.expunge(obj)
        self.session.execute(
            delete(Org).where(Org.id.in_(old_ids)), execution_options={"synchronize_session": False}
        )

    def _add(self, kind: str, obj: Base) -> None:
        self.session.add(obj)
        self.counts[kind] += 1

    def _remember(self, kind: str, key: str) -> uuid.UUID:
        self.known.setdefault(kind, set()).add(key)
        return demo_id(kind, key)

    def _ref(self, kind: str, key: str | None) -> uuid.UUID | None:
        if key is None:
            return None
        if key not in self.known.get(kind, set()):
            raise DemoDataError(f"{DATA_FILE.name}: unknown {kind} {key!r} (or defined later)")
        return demo_id(kind, key)

    def _must_ref(self, kind: str, key: str | None) -> uuid.UUID:
        found = self._ref(kind, key)
        if found is None:
            raise DemoDataError(f"{DATA_FILE.name}: a {kind} is required here")
        return found

    def _values(self, model: type[Base], record: dict[str, Any]) -> dict[str, Any]:
        """Column values of `record`, with relative times resolved and money made exact."""
        columns = model.__table__.columns
        values: dict[str, Any] = {"org_id": self.org_id} if "org_id" in columns else {}
        for field in ("created_at", "updated_at"):
            if field in columns:
                values[field] = self.now
        for raw_name, raw in record.items():
            if raw_name in _STRUCTURE:
                continue
            name, value = raw_name, raw
            for suffix, sign in (("_days_ago", -1), ("_in_days", 1)):
                if raw_name.endswith(suffix):
                    name = self._column_name(model, raw_name.removesuffix(suffix))
                    value = self.now + timedelta(days=sign * int(raw))
            if name not in columns:
                raise DemoDataError(f"{DATA_FILE.name}: {model.__tablename__} has no {raw_name!r}")
            column_type = columns[name].type
            if isinstance(value, datetime) and isinstance(column_type, Date):
                value = value.date()
            elif isinstance(column_type, Amount) and value is not None:
                value = Decimal(str(value))
            values[name] = value
        return values

    @staticmethod
    def _column_name(model: type[Base], stem: str) -> str:
        columns = model.__table__.columns
        for name in (stem, f"{stem}_at", f"{stem}_on"):
            if name in columns:
                return name
        raise DemoDataError(f"{DATA_FILE.name}: {model.__tablename__} has no time {stem!r}")

    # --- the parts of the company ----------------------------------------------------------

    def _people(self) -> None:
        for user in self.data.get("users", []):
            key = str(user["key"])
            manager = self._ref("user", user.get("manager"))
            user_id = self._remember("user", key)
            self._add("users", User(id=user_id, manager_id=manager, **self._values(User, user)))
            # each user flushed on its own: the manager row must exist before its reports
            self.session.flush()
            self._add(
                "identities",
                Identity(
                    id=demo_id("identity", f"console:{key}"),
                    org_id=self.org_id,
                    user_id=user_id,
                    platform=Platform.CONSOLE,
                    external_id=key,
                    username=key,
                    created_at=self.now,
                ),
            )
        channel = self.data.get("team_channel")
        if channel:
            self._add(
                "team_channels",
                TeamChannel(
                    id=demo_id("team_channel", f"console:{channel['channel_id']}"),
                    platform=Platform.CONSOLE,
                    bound_by=self._ref("user", channel.get("bound_by")),
                    **self._values(TeamChannel, channel),
                ),
            )
        for sub in self.data.get("digest_subscriptions", []):
            self._add(
                "digest_subscriptions",
                DigestSubscription(
                    id=demo_id("digest_subscription", f"{sub['user']}:console"),
                    user_id=self._must_ref("user", sub["user"]),
                    platform=Platform.CONSOLE,
                    **self._values(DigestSubscription, sub),
                ),
            )
        self.session.flush()

    def _account(self, data: dict[str, Any]) -> None:
        key = str(data["key"])
        owner = self._must_ref("user", data["owner"])
        account_id = self._remember("account", key)
        self._add(
            "accounts",
            Account(
                id=account_id,
                owner_id=owner,
                name_key=name_key(data["name"]),
                **self._values(Account, data),
            ),
        )
        self.session.flush()
        for contact in data.get("contacts", []):
            reports_to = self._ref("contact", contact.get("reports_to"))
            self._add(
                "contacts",
                Contact(
                    id=self._remember("contact", str(contact["key"])),
                    account_id=account_id,
                    owner_id=self._ref("user", contact.get("owner")) or owner,
                    reports_to_id=reports_to,
                    name_key=name_key(contact["name"]),
                    **self._values(Contact, contact),
                ),
            )
            self.session.flush()
        for i, note in enumerate(data.get("competitor_notes", [])):
            self._add(
                "competitor_notes",
                CompetitorNote(
                    id=demo_id("competitor_note", f"{key}:{i}"),
                    account_id=account_id,
                    author_id=owner,
                    **self._values(CompetitorNote, note),
                ),
            )
        for opp in data.get("opportunities", []):
            self._opportunity(opp, account_id, owner)
        for invoice in data.get("invoices", []):
            self._invoice(invoice, account_id)
        self.session.flush()

    def _opportunity(self, data: dict[str, Any], account_id: uuid.UUID, owner: uuid.UUID) -> None:
        key = str(data["key"])
        opp_id = self._remember("opportunity", key)
        values = {"currency": DEFAULT_CURRENCY, **self._values(Opportunity, data)}
        self._add(
            "opportunities",
            Opportunity(
                id=opp_id,
                account_id=account_id,
                owner_id=self._ref("user", data.get("owner")) or owner,
                **values,
            ),
        )
        self.session.flush()
        self._needs(data.get("needs", []), opp_id, None)
        for i, spin in enumerate(data.get("spin", [])):
            self._add(
                "spin_entries",
                SpinEntry(
                    id=demo_id("spin_entry", f"{key}:{i}"),
                    opportunity_id=opp_id,
                    contact_id=self._ref("contact", spin.get("contact")),
                    user_id=owner,
                    **self._values(SpinEntry, spin),
                ),
            )
        for i, signal in enumerate(data.get("signals", [])):
            self._add(
                "buying_signals",
                BuyingSignal(
                    id=demo_id("buying_signal", f"{key}:{i}"),
                    opportunity_id=opp_id,
                    contact_id=self._ref("contact", signal.get("contact")),
                    **self._values(BuyingSignal, signal),
                ),
            )
        for proposal in data.get("proposals", []):
            values = {"currency": DEFAULT_CURRENCY, **self._values(Proposal, proposal)}
            self._add(
                "proposals",
                Proposal(
                    id=demo_id("proposal", f"{key}:v{proposal['version']}"),
                    opportunity_id=opp_id,
                    **values,
                ),
            )

    def _needs(
        self, items: Iterable[dict[str, Any]], opp_id: uuid.UUID, parent: uuid.UUID | None
    ) -> None:
        for position, item in enumerate(items):
            need_id = self._remember("need", str(item["key"]))
            self._add(
                "needs",
                Need(
                    id=need_id,
                    opportunity_id=opp_id,
                    parent_id=parent,
                    contact_id=self._ref("contact", item.get("contact")),
                    position=position,
                    **self._values(Need, item),
                ),
            )
            # the parent row must exist before its children reference it
            self.session.flush()
            self._needs(item.get("children", []), opp_id, need_id)

    def _invoice(self, data: dict[str, Any], account_id: uuid.UUID) -> None:
        number = str(data["number"])
        invoice_id = self._remember("invoice", number)
        values = {"currency": DEFAULT_CURRENCY, **self._values(Invoice, data)}
        self._add(
            "invoices",
            Invoice(
                id=invoice_id,
                account_id=account_id,
                opportunity_id=self._ref("opportunity", data.get("opportunity")),
                **values,
            ),
        )
        self.session.flush()
        for i, payment in enumerate(data.get("payments", [])):
            self._add(
                "payments",
                Payment(
                    id=demo_id("payment", f"{number}:{i}"),
                    invoice_id=invoice_id,
                    **{"currency": values["currency"], **self._values(Payment, payment)},
                ),
            )
        for i, action in enumerate(data.get("collection_actions", [])):
            self._add(
                "collection_actions",
                CollectionAction(
                    id=demo_id("collection_action", f"{number}:{i}"),
                    invoice_id=invoice_id,
                    done_by=self._ref("user", action.get("done_by")),
                    **self._values(CollectionAction, action),
                ),
            )
