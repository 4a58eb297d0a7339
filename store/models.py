"""The whole salescoach schema as typed SQLAlchemy 2 declarative models.

Conventions (see DESIGN.md, "Domain"): every business row carries `org_id`; primary keys are
UUIDs that the application usually sets itself (deterministically where it matters), so nothing
relies on autoincrement; enum-like columns are `String(32)` holding the codes of
`store.enums`; timestamps are timezone-aware UTC on both backends; money is exact `Decimal`.
"""

from __future__ import annotations

import unicodedata
import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    Uuid,
    false,
    func,
    text,
    true,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeEngine

from store.enums import (
    AccountStatus,
    DialogStatus,
    InvoiceStatus,
    NudgeStatus,
    OutboxStatus,
    ProposalStatus,
)

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

CENT = Decimal("0.01")


class UTCDateTime(TypeDecorator[datetime]):
    """`DateTime(timezone=True)` that always hands back an aware UTC datetime.

    SQLite has no time zones: SQLAlchemy stores the wall time and returns naive values, so an
    aware value in another zone would be stored wrong and read back naive. Values are converted
    to UTC on the way in (naive ones are taken as UTC) and marked UTC on the way out.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Amount(TypeDecorator[Decimal]):
    """`Numeric(18, 2)` that is an exact `Decimal` on both backends.

    SQLite has no decimal type and SQLAlchemy warns (an error in our tests) when it converts its
    floats back; we read floats and round them to cents ourselves, which is exact for any amount
    below 10^13.
    """

    impl = Numeric(18, 2)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(Numeric(18, 2, asdecimal=False))
        return dialect.type_descriptor(Numeric(18, 2))

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None or isinstance(value, Decimal):
            return value
        return Decimal(str(value))

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        if isinstance(value, Decimal):
            return value
        return Decimal(f"{value:.2f}").quantize(CENT)


JSONType = JSON().with_variant(JSONB(), "postgresql")


def name_key(name: str) -> str:
    """The lookup key stored in `name_key`: NFKC, case-folded, whitespace collapsed.

    NFKC folds full-width characters (`ＡＢＣ`, `（`) that Chinese input methods produce.
    """
    return " ".join(unicodedata.normalize("NFKC", name).casefold().split())


def _utcnow() -> datetime:
    # Only a fallback for `updated_at` when a caller forgets to pass its injected clock.
    return datetime.now(UTC)


def _org_fk(*, index: bool = True) -> Mapped[uuid.UUID]:
    """The org a row belongs to. `index=False` where a unique constraint or index of the
    table already starts with `org_id`: it serves every org look-up (and the cascade from
    orgs) as well, and a second index would only be one more write on every insert."""
    return mapped_column(ForeignKey("orgs.id", ondelete="CASCADE"), index=index)


def _trigram_index(table: str, column: str) -> Index:
    """A pg_trgm GIN index for fuzzy look-ups (store/search.py): substrings (`LIKE`) and
    names like the query (`q <% name`) from the index. GIN, not GiST: on 20,000 names a
    look-up read 3-10x fewer pages. PostgreSQL only; SQLite searches without it. The
    extension is created by migration 0002 (look-ups section)."""
    return Index(
        f"ix_{table}_{column}_trgm", column, postgresql_using="gin",
        postgresql_ops={column: "gin_trgm_ops"},
    ).ddl_if(dialect="postgresql")


def _external_id_index(table: str) -> Index:
    """CSV import upserts by (org_id, external_id); rows made in chat have none (NULLs never
    collide)."""
    return Index(f"uq_{table}_org_id_external_id", "org_id", "external_id", unique=True)


def _code(default: str | None = None, *, nullable: bool = False) -> Any:
    """An enum-like `String(32)` column; the allowed codes live in flow data and store.enums."""
    if default is None:
        return mapped_column(String(32), nullable=nullable)
    return mapped_column(
        String(32), default=str(default), server_default=str(default), nullable=nullable
    )


class Base(DeclarativeBase):
    """Declarative base with stable constraint names (Alembic relies on them on SQLite)."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {  # noqa: RUF012 - SQLAlchemy reads this class attribute
        uuid.UUID: Uuid(),
        datetime: UTCDateTime(),
        date: Date(),
        Decimal: Amount(),
        dict[str, Any]: JSONType,
        list[Any]: JSONType,
        str: String(255),
    }

    # sort_order: keep `id` the first column of every table
    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4, sort_order=-1)


class Timestamps:
    """`created_at` / `updated_at`, set by the database unless the app passes its clock."""

    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now(), onupdate=_utcnow)


# --- people ---------------------------------------------------------------------------------


class Org(Base):
    """One Slack workspace, one Telegram bot, or the console."""

    __tablename__ = "orgs"
    __table_args__ = (UniqueConstraint("platform", "external_id"),)

    name: Mapped[str]
    platform: Mapped[str] = _code()
    external_id: Mapped[str]
    default_lang: Mapped[str] = mapped_column(String(8), default="en", server_default="en")
    tz: Mapped[str] = mapped_column(String(64), default="UTC", server_default="UTC")
    # stalled-day thresholds per funnel stage, collection thresholds, digest defaults ...
    settings: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now(), onupdate=_utcnow)


class User(Base):
    __tablename__ = "users"

    org_id: Mapped[uuid.UUID] = _org_fk()
    display_name: Mapped[str]
    role: Mapped[str] = _code("rep")
    manager_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), index=True
    )
    tz: Mapped[str | None] = mapped_column(String(64))
    lang: Mapped[str | None] = mapped_column(String(8))
    active: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now(), onupdate=_utcnow)

    identities: Mapped[list[Identity]] = relationship(
        back_populates="user", cascade="all, delete-orphan", passive_deletes=True
    )


class Identity(Base):
    """A user's account on one platform (Slack user id, Telegram user id, console name)."""

    __tablename__ = "identities"
    __table_args__ = (UniqueConstraint("org_id", "platform", "external_id"),)

    org_id: Mapped[uuid.UUID] = _org_fk(index=False)  # led by org_id: see _org_fk
    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    platform: Mapped[str] = _code()
    external_id: Mapped[str]
    username: Mapped[str | None]
    blocked_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())

    user: Mapped[User] = relationship(back_populates="identities")


# --- accounts and people at the customer ----------------------------------------------------


class Account(Timestamps, Base):
    """A customer: the customer information sheet's status and organisation parts."""

    __tablename__ = "accounts"
    __table_args__ = (
        Index("ix_accounts_org_id_name_key", "org_id", "name_key"),
        _trigram_index("accounts", "name_key"),
        _external_id_index("accounts"),
    )

    org_id: Mapped[uuid.UUID] = _org_fk(index=False)  # led by org_id: see _org_fk
    owner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"), index=True)
    name: Mapped[str]
    name_key: Mapped[str]
    # the id in the system a CSV import came from (upsert key); see store/csvio.py
    external_id: Mapped[str | None] = mapped_column(String(128))
    industry: Mapped[str | None] = _code(nullable=True)
    nature: Mapped[str | None] = _code(nullable=True)
    size_employees: Mapped[int | None] = mapped_column(Integer)
    business: Mapped[str | None] = mapped_column(Text)
    source_method: Mapped[str | None] = _code(nullable=True)
    # who referred us / which partner, for the referral and partner source methods
    source_note: Mapped[str | None] = mapped_column(Text)
    last_purchase_qty: Mapped[Decimal | None]
    last_purchase_amount: Mapped[Decimal | None]
    last_purchase_currency: Mapped[str | None] = mapped_column(String(3))
    last_purchase_satisfaction: Mapped[int | None] = mapped_column(Integer)
    address: Mapped[str | None] = mapped_column(Text)
    postcode: Mapped[str | None] = mapped_column(String(16))
    website: Mapped[str | None]
    purchase_departments: Mapped[list[Any]] = mapped_column(default=list)
    org_notes: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = _code(AccountStatus.ACTIVE)

    contacts: Mapped[list[Contact]] = relationship(
        back_populates="account", cascade="all, delete-orphan", passive_deletes=True
    )
    opportunities: Mapped[list[Opportunity]] = relationship(
        back_populates="account", cascade="all, delete-orphan", passive_deletes=True
    )


class Contact(Timestamps, Base):
    """A person at the customer, placed by level, function and buying role."""

    __tablename__ = "contacts"
    __table_args__ = (
        Index("ix_contacts_org_id_name_key", "org_id", "name_key"),
        _trigram_index("contacts", "name_key"),
        _external_id_index("contacts"),
    )

    org_id: Mapped[uuid.UUID] = _org_fk(index=False)  # led by org_id: see _org_fk
    account_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    owner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"), index=True)
    # organisation chart: whom this contact reports to inside the customer
    reports_to_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("contacts.id", ondelete="SET NULL")
    )
    name: Mapped[str]
    name_key: Mapped[str]
    external_id: Mapped[str | None] = mapped_column(String(128))
    title: Mapped[str | None]
    department: Mapped[str | None]
    level: Mapped[str | None] = _code(nullable=True)
    function: Mapped[str | None] = _code(nullable=True)
    buying_roles: Mapped[list[Any]] = mapped_column(default=list)
    insider_level: Mapped[str | None] = _code(nullable=True)
    comm_style: Mapped[str | None] = _code(nullable=True)
    relationship_stage: Mapped[str | None] = _code(nullable=True)
    phone: Mapped[str | None] = mapped_column(String(64))
    email: Mapped[str | None]
    # work-related notes (scope of work, influence, relations inside the customer); shareable
    work_notes: Mapped[str | None] = mapped_column(Text)
    # private: family, home, hobbies — owner and their managers only, never in channels
    personal_notes: Mapped[str | None] = mapped_column(Text)

    account: Mapped[Account] = relationship(back_populates="contacts")


class CompetitorNote(Base):
    __tablename__ = "competitor_notes"

    org_id: Mapped[uuid.UUID] = _org_fk()
    account_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    author_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    competitor: Mapped[str]
    product: Mapped[str | None]
    history: Mapped[str | None] = mapped_column(Text)
    rep_name: Mapped[str | None]
    rep_style: Mapped[str | None] = mapped_column(Text)
    strengths: Mapped[str | None] = mapped_column(Text)
    weaknesses: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now(), onupdate=_utcnow)


# --- the funnel -----------------------------------------------------------------------------


class Opportunity(Timestamps, Base):
    __tablename__ = "opportunities"
    __table_args__ = (
        Index("ix_opportunities_org_id_stage", "org_id", "stage"),
        # the nudge scans (bot/nudges.py): stalled, past-due next step, too long in a stage
        Index("ix_opportunities_org_id_stage_last_activity_at", "org_id", "stage",
              "last_activity_at"),
        Index("ix_opportunities_org_id_stage_stage_entered_at", "org_id", "stage",
              "stage_entered_at"),
        Index("ix_opportunities_org_id_next_step_due", "org_id", "next_step_due"),
        Index("ix_opportunities_org_id_created_at", "org_id", "created_at"),
        # the digest's funnel per rep (bot/digest.py), read from the index alone
        Index("ix_opportunities_owner_id_stage_currency_amount", "owner_id", "stage",
              "currency", "amount"),
        _trigram_index("opportunities", "name"),
        _external_id_index("opportunities"),
    )

    org_id: Mapped[uuid.UUID] = _org_fk(index=False)  # led by org_id: see _org_fk
    account_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    owner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"), index=True)
    name: Mapped[str]
    external_id: Mapped[str | None] = mapped_column(String(128))
    product: Mapped[str | None]
    stage: Mapped[str] = _code("analysis")
    phase: Mapped[str | None] = _code(nullable=True)
    amount: Mapped[Decimal | None]
    currency: Mapped[str | None] = mapped_column(String(3))
    expected_close: Mapped[date | None]
    # qualification check code -> answer (see enums.QualificationCheck)
    qualification: Mapped[dict[str, Any]] = mapped_column(default=dict)
    verdict: Mapped[str | None] = _code(nullable=True)
    verdict_reasons: Mapped[list[Any]] = mapped_column(default=list)
    next_step: Mapped[str | None] = mapped_column(Text)
    next_step_due: Mapped[date | None]
    stage_entered_at: Mapped[datetime | None]
    last_activity_at: Mapped[datetime | None]
    closed_at: Mapped[datetime | None]
    lost_reason: Mapped[str | None] = mapped_column(Text)  # a code: enums.LostReason
    # the rest of what `lost` records (enums.LostDetail): the reason in words, who won, the lesson
    lost_details: Mapped[dict[str, Any] | None] = mapped_column(default=dict)
    # the stage a lost deal was in, where `reopen` brings it back
    lost_from: Mapped[str | None] = _code(nullable=True)
    # the six steps' end markers and what the later steps record (flows in dialogs/flows/;
    # exit criteria in store/funnel.py)
    requirements_on: Mapped[date | None]  # written requirements / tender document received
    negotiation_on: Mapped[date | None]  # negotiation started
    close_method: Mapped[str | None] = _code(nullable=True)
    negotiation_notes: Mapped[str | None] = mapped_column(Text)
    addons: Mapped[str | None] = mapped_column(Text)
    contract_on: Mapped[date | None]  # contract signed
    # contract and credit review checklist: terms, licence, bank_account -> yes/no
    contract_review: Mapped[dict[str, Any] | None] = mapped_column(default=dict)
    produced_on: Mapped[date | None]
    delivered_on: Mapped[date | None]
    accepted_on: Mapped[date | None]
    referral_note: Mapped[str | None] = mapped_column(Text)

    account: Mapped[Account] = relationship(back_populates="opportunities")


class Need(Base):
    """A node of the needs tree: goal -> problem -> solution -> product / criterion."""

    __tablename__ = "needs"

    org_id: Mapped[uuid.UUID] = _org_fk()
    opportunity_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("opportunities.id", ondelete="CASCADE"), index=True
    )
    parent_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("needs.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = _code()
    text: Mapped[str] = mapped_column(Text)
    contact_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("contacts.id", ondelete="SET NULL")
    )
    position: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now(), onupdate=_utcnow)


class SpinEntry(Base):
    __tablename__ = "spin_entries"

    org_id: Mapped[uuid.UUID] = _org_fk()
    opportunity_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("opportunities.id", ondelete="CASCADE"), index=True
    )
    contact_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("contacts.id", ondelete="SET NULL")
    )
    user_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    kind: Mapped[str] = mapped_column(String(1))
    question: Mapped[str] = mapped_column(Text)
    answer: Mapped[str | None] = mapped_column(Text)
    asked_at: Mapped[datetime] = mapped_column(server_default=func.now())
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())


class BuyingSignal(Base):
    __tablename__ = "buying_signals"

    org_id: Mapped[uuid.UUID] = _org_fk()
    opportunity_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("opportunities.id", ondelete="CASCADE"), index=True
    )
    contact_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("contacts.id", ondelete="SET NULL")
    )
    signal: Mapped[str] = _code()
    note: Mapped[str | None] = mapped_column(Text)
    observed_at: Mapped[datetime] = mapped_column(server_default=func.now())
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())


class FabEntry(Base):
    """Features, advantages, benefits (FAB) of one product or service for one opportunity."""

    __tablename__ = "fab_entries"

    org_id: Mapped[uuid.UUID] = _org_fk()
    opportunity_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("opportunities.id", ondelete="CASCADE"), index=True
    )
    product: Mapped[str]
    feature: Mapped[str] = mapped_column(Text)
    advantage: Mapped[str | None] = mapped_column(Text)
    benefit: Mapped[str | None] = mapped_column(Text)
    # the need it answers, when known
    need_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("needs.id", ondelete="SET NULL"))
    position: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())


class SwotEntry(Base):
    """One SWOT factor: quadrant s/w/o/t; `source` the QCDDMS (internal) or PEST (external)
    prompt it came from (quality, cost, delivery, development, management, service; political,
    economic, social, technological)."""

    __tablename__ = "swot_entries"

    org_id: Mapped[uuid.UUID] = _org_fk()
    opportunity_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("opportunities.id", ondelete="CASCADE"), index=True
    )
    quadrant: Mapped[str] = mapped_column(String(1))
    source: Mapped[str | None] = _code(nullable=True)
    text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())


class Proposal(Timestamps, Base):
    """The seven-part proposal (建议书), versioned per opportunity."""

    __tablename__ = "proposals"
    __table_args__ = (UniqueConstraint("opportunity_id", "version"),)

    org_id: Mapped[uuid.UUID] = _org_fk()
    opportunity_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("opportunities.id", ondelete="CASCADE"), index=True
    )
    version: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    title: Mapped[str]
    sections: Mapped[list[Any]] = mapped_column(default=list)
    quote_amount: Mapped[Decimal | None]
    currency: Mapped[str | None] = mapped_column(String(3))
    status: Mapped[str] = _code(ProposalStatus.DRAFT)
    file_name: Mapped[str | None]
    sent_at: Mapped[datetime | None]


# --- receivables ----------------------------------------------------------------------------


class Invoice(Timestamps, Base):
    __tablename__ = "invoices"
    __table_args__ = (
        UniqueConstraint("org_id", "number"),
        Index("ix_invoices_org_id_status_due_on", "org_id", "status", "due_on"),
        _external_id_index("invoices"),
    )

    org_id: Mapped[uuid.UUID] = _org_fk(index=False)  # led by org_id: see _org_fk
    account_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    opportunity_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("opportunities.id", ondelete="SET NULL"), index=True
    )
    number: Mapped[str] = mapped_column(String(64))
    external_id: Mapped[str | None] = mapped_column(String(128))
    amount: Mapped[Decimal]
    currency: Mapped[str] = mapped_column(String(3))
    issued_on: Mapped[date]
    due_on: Mapped[date]
    status: Mapped[str] = _code(InvoiceStatus.OPEN)
    closed_on: Mapped[date | None]
    note: Mapped[str | None] = mapped_column(Text)

    payments: Mapped[list[Payment]] = relationship(
        back_populates="invoice",
        cascade="all, delete-orphan",
        passive_deletes=True,
        order_by="Payment.paid_on",
    )
    collection_actions: Mapped[list[CollectionAction]] = relationship(
        back_populates="invoice",
        cascade="all, delete-orphan",
        passive_deletes=True,
        order_by="CollectionAction.done_at",
    )


class Payment(Base):
    __tablename__ = "payments"

    org_id: Mapped[uuid.UUID] = _org_fk()
    invoice_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("invoices.id", ondelete="CASCADE"), index=True
    )
    amount: Mapped[Decimal]
    currency: Mapped[str] = mapped_column(String(3))
    paid_on: Mapped[date]
    note: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())

    invoice: Mapped[Invoice] = relationship(back_populates="payments")


class CollectionAction(Base):
    """One rung of the dunning ladder taken on an invoice."""

    __tablename__ = "collection_actions"

    org_id: Mapped[uuid.UUID] = _org_fk()
    invoice_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("invoices.id", ondelete="CASCADE"), index=True
    )
    rung: Mapped[str] = _code()
    note: Mapped[str | None] = mapped_column(Text)
    done_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    done_at: Mapped[datetime] = mapped_column(server_default=func.now())
    next_due: Mapped[date | None]
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())

    invoice: Mapped[Invoice] = relationship(back_populates="collection_actions")


class Activity(Base):
    """The activity log: calls, visits, stage changes ... Any of the subjects may be absent."""

    __tablename__ = "activities"
    __table_args__ = (
        Index("ix_activities_opportunity_id_occurred_at", "opportunity_id", "occurred_at"),
    )

    org_id: Mapped[uuid.UUID] = _org_fk()
    user_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), index=True
    )
    account_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    opportunity_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("opportunities.id", ondelete="CASCADE")
    )
    contact_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("contacts.id", ondelete="SET NULL")
    )
    kind: Mapped[str] = _code()
    note: Mapped[str | None] = mapped_column(Text)
    occurred_at: Mapped[datetime] = mapped_column(server_default=func.now())
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())


# --- delivery -------------------------------------------------------------------------------


class TeamChannel(Base):
    """The channel where nudges go (bound with the `channel` command)."""

    __tablename__ = "team_channels"
    __table_args__ = (UniqueConstraint("org_id", "platform", "channel_id"),)

    org_id: Mapped[uuid.UUID] = _org_fk(index=False)  # led by org_id: see _org_fk
    platform: Mapped[str] = _code()
    channel_id: Mapped[str]
    name: Mapped[str | None]
    bound_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    bound_at: Mapped[datetime] = mapped_column(server_default=func.now())
    active: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())


class DigestSubscription(Base):
    __tablename__ = "digest_subscriptions"
    __table_args__ = (UniqueConstraint("user_id", "platform"),)

    org_id: Mapped[uuid.UUID] = _org_fk()
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    platform: Mapped[str] = _code()
    # the direct-message chat to post to, when the platform needs one (Slack DM channel id)
    channel_id: Mapped[str | None]
    hour: Mapped[int] = mapped_column(Integer, default=8, server_default="8")
    minute: Mapped[int] = mapped_column(Integer, default=30, server_default="30")
    # ISO weekdays 1 (Monday) .. 7
    weekdays: Mapped[list[Any]] = mapped_column(default=lambda: [1, 2, 3, 4, 5])
    active: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    last_sent_on: Mapped[date | None]
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())


class Nudge(Base):
    """A reminder about a subject; unique per (subject, rule, period) so it is raised once."""

    __tablename__ = "nudges"
    __table_args__ = (
        UniqueConstraint("org_id", "subject_type", "subject_id", "rule", "period"),
        # every rule's "not snoozed" check (bot/nudges.py) reads only the snoozed nudges,
        # however many have been raised over time
        Index("ix_nudges_snoozed", "org_id", "subject_type", "subject_id", "snoozed_until",
              postgresql_where=text("snoozed_until IS NOT NULL"),
              sqlite_where=text("snoozed_until IS NOT NULL")),
    )

    org_id: Mapped[uuid.UUID] = _org_fk(index=False)  # led by org_id: see _org_fk
    # whom the nudge is for (the owner), when there is one
    user_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    subject_type: Mapped[str] = _code()
    subject_id: Mapped[uuid.UUID]
    rule: Mapped[str] = mapped_column(String(64))
    period: Mapped[str] = _code()
    status: Mapped[str] = _code(NudgeStatus.PENDING)
    snoozed_until: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    sent_at: Mapped[datetime | None]
    done_at: Mapped[datetime | None]


class Outbox(Base):
    """Messages waiting to be delivered, paced and retried by the outbox worker."""

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_status_not_before", "status", "not_before"),)

    org_id: Mapped[uuid.UUID] = _org_fk()
    platform: Mapped[str] = _code()
    channel_id: Mapped[str]
    # reply in a thread (Slack thread_ts) or to a message (Telegram reply_to_message_id)
    thread_id: Mapped[str | None]
    kind: Mapped[str] = _code()
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    dedupe_key: Mapped[str] = mapped_column(String(255), unique=True)
    status: Mapped[str] = _code(OutboxStatus.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    not_before: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    sent_at: Mapped[datetime | None]
    # the platform's id of the delivered message, for later edits
    external_message_id: Mapped[str | None]
    # the claim of the worker delivering it: a row whose lease ran out (its worker died) is
    # claimed again; `parts_sent` of its messages were confirmed and are not sent again
    claimed_by: Mapped[str | None] = mapped_column(String(64))
    lease_until: Mapped[datetime | None]
    parts_sent: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # the message whose send has begun (committed before the platform call, cleared with its
    # record): set on a claimed row, that part may have been accepted and is not sent again
    sending_part: Mapped[int | None] = mapped_column(Integer)


class ProcessedEvent(Base):
    """Platform event ids already handled, so a retry or redelivery changes nothing twice."""

    __tablename__ = "processed_events"
    __table_args__ = (UniqueConstraint("platform", "event_id"),)

    # nullable: an event may be recorded before (or without) resolving its org
    org_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("orgs.id", ondelete="CASCADE"), index=True
    )
    platform: Mapped[str] = _code()
    event_id: Mapped[str]
    processed_at: Mapped[datetime] = mapped_column(server_default=func.now())


class DialogSession(Timestamps, Base):
    """A user's conversation with a flow; `state` is typed JSON, `version` guards races."""

    __tablename__ = "dialog_sessions"
    __table_args__ = (
        Index("ix_dialog_sessions_user_id_status_updated_at", "user_id", "status", "updated_at"),
    )

    org_id: Mapped[uuid.UUID] = _org_fk()
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    flow: Mapped[str] = mapped_column(String(64))
    state: Mapped[dict[str, Any]] = mapped_column(default=dict)
    version: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    status: Mapped[str] = _code(DialogStatus.ACTIVE)
    subject_type: Mapped[str | None] = _code(nullable=True)
    subject_id: Mapped[uuid.UUID | None]


# --- Telegram ---------------------------------------------------------------------------------


class TelegramKeyboard(Base):
    """The buttons of one Telegram message. `callback_data` holds at most 64 bytes, so a button
    carries this row's short `key` and its index; the values it stands for live here."""

    __tablename__ = "telegram_keyboards"
    __table_args__ = (
        UniqueConstraint("key"),
        Index("ix_telegram_keyboards_bot_id_chat_id_closed", "bot_id", "chat_id", "closed"),
    )

    key: Mapped[str] = mapped_column(String(16))
    bot_id: Mapped[str] = mapped_column(String(32))
    chat_id: Mapped[str] = mapped_column(String(32))
    # "question" (a dialog's open question: only the latest in a chat can be answered) or "post"
    kind: Mapped[str] = _code()
    # [value, label] pairs: the answers, then the controls (back, skip, tip, cancel)
    options: Mapped[list[Any]] = mapped_column(default=list)
    controls: Mapped[list[Any]] = mapped_column(default=list)
    multi: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # indexes of the options ticked so far (multi-choice)
    selected: Mapped[list[Any]] = mapped_column(default=list)
    # the message's text (Telegram HTML), shown again with the chosen answer after a tap
    text: Mapped[str] = mapped_column(Text)
    lang: Mapped[str] = mapped_column(String(8))
    closed: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())


# --- nudges and digests -----------------------------------------------------------------------


class StageNorm(Base):
    """The team's usual time in a funnel stage, refreshed daily by the nudge pass, so the
    "far longer than usual" rule reads one row instead of averaging every opportunity."""

    __tablename__ = "stage_norms"
    __table_args__ = (UniqueConstraint("org_id", "stage"),)

    org_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("orgs.id", ondelete="CASCADE"))
    stage: Mapped[str] = _code()
    usual_days: Mapped[Decimal]
    sample: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    computed_at: Mapped[datetime]


# --- look-ups and privacy -------------------------------------------------------------------


class AuditLog(Base):
    """Who looked up, exported, changed or erased personal data (store/privacy.py).

    Holds ids and codes only, never the personal data itself, so erasing a contact leaves
    nothing personal behind here. `actor` names a CLI user when there is no user row."""

    __tablename__ = "audit_log"
    __table_args__ = (
        Index("ix_audit_log_org_id_subject_type_subject_id", "org_id", "subject_type",
              "subject_id"),
    )

    org_id: Mapped[uuid.UUID] = _org_fk(index=False)  # led by org_id: see _org_fk
    user_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    actor: Mapped[str | None] = mapped_column(String(255))
    # view_personal, export, forget, import, update
    action: Mapped[str] = _code()
    subject_type: Mapped[str] = _code()
    subject_id: Mapped[uuid.UUID | None]
    # where it happened and how (command, platform, chat kind, row counts ...); no personal data
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)
    at: Mapped[datetime] = mapped_column(server_default=func.now())
