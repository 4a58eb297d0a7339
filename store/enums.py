"""Codes stored in the `String(32)` enum-like columns.

The database keeps plain strings so a sales-ops person can add a code in a flow file without a
migration; these enums are what Python code refers to. A `StrEnum` member compares equal to its
code, so `opp.stage == FunnelStage.VALUE` works on values read back from the database.
"""

from __future__ import annotations

from enum import StrEnum


class Platform(StrEnum):
    CONSOLE = "console"
    SLACK = "slack"
    TELEGRAM = "telegram"


class Lang(StrEnum):
    EN = "en"
    ZH = "zh"


class Role(StrEnum):
    REP = "rep"
    MANAGER = "manager"
    ADMIN = "admin"


class AccountStatus(StrEnum):
    ACTIVE = "active"
    KEEP_IN_TOUCH = "keep_in_touch"
    ARCHIVED = "archived"


class Industry(StrEnum):
    OIL_GAS = "oil_gas"
    POWER = "power"
    TELECOM = "telecom"
    HIGHWAY = "highway"
    BUS_TRANSPORT = "bus_transport"
    TOURISM = "tourism"
    MINING = "mining"
    STEEL = "steel"
    NONFERROUS = "nonferrous"
    BANKING = "banking"
    CHEMICALS = "chemicals"
    CEMENT = "cement"
    GOVERNMENT = "government"
    OTHER = "other"


class Nature(StrEnum):
    STATE_OWNED = "state_owned"
    PRIVATE = "private"
    GOVERNMENT = "government"
    FOREIGN = "foreign"
    JOINT_VENTURE = "joint_venture"
    OTHER = "other"


class SourceMethod(StrEnum):
    """The five ways to find customers (寻找客户的五大法则)."""

    INDUSTRY = "industry"
    REGIONAL = "regional"
    REFERRAL = "referral"
    PARTNER = "partner"
    TRACKING = "tracking"


class ContactLevel(StrEnum):
    EXECUTIVE = "executive"
    SENIOR = "senior"
    MIDDLE = "middle"
    STAFF = "staff"


class ContactFunction(StrEnum):
    """A contact's function; also the codes of `accounts.purchase_departments`."""

    MANAGEMENT = "management"
    PROCUREMENT = "procurement"
    FINANCE = "finance"
    TECHNICAL = "technical"
    USER_DEPT = "user_dept"
    ADMIN = "admin"
    UNION = "union"
    OTHER = "other"


class BuyingRole(StrEnum):
    INITIATOR = "initiator"
    DECISION_MAKER = "decision_maker"
    DESIGNER = "designer"
    EVALUATOR = "evaluator"
    USER = "user"


class InsiderLevel(StrEnum):
    NONE = "none"
    LOW = "low"
    MID = "mid"
    HIGH = "high"


class CommStyle(StrEnum):
    PEACOCK = "peacock"
    KOALA = "koala"
    OWL = "owl"
    TIGER = "tiger"
    CHAMELEON = "chameleon"
    UNKNOWN = "unknown"


class RelationshipStage(StrEnum):
    ACQUAINT = "acquaint"
    DATE = "date"
    TRUST = "trust"
    ALLIANCE = "alliance"


class FunnelStage(StrEnum):
    """The sales funnel, top to bottom, then the three ways out of it."""

    ANALYSIS = "analysis"
    TRUST = "trust"
    NEEDS = "needs"
    VALUE = "value"
    COMMITMENT = "commitment"
    DEPOSIT = "deposit"
    ORDER = "order"
    COLLECTION = "collection"
    WON = "won"
    KEEP_IN_TOUCH = "keep_in_touch"
    LOST = "lost"


OPEN_STAGES: frozenset[FunnelStage] = frozenset(
    {
        FunnelStage.ANALYSIS,
        FunnelStage.TRUST,
        FunnelStage.NEEDS,
        FunnelStage.VALUE,
        FunnelStage.COMMITMENT,
        FunnelStage.DEPOSIT,
        FunnelStage.ORDER,
        FunnelStage.COLLECTION,
    }
)


class BuyingPhase(StrEnum):
    """The customer's buying process (客户采购流程)."""

    DISCOVER = "discover"
    DELIBERATION = "deliberation"
    DESIGN = "design"
    EVALUATION = "evaluation"
    COMMITMENT = "commitment"
    USE = "use"


class QualificationCheck(StrEnum):
    """Keys of `opportunities.qualification`: clear, imminent and valuable?"""

    NEED = "need"
    TIMETABLE = "timetable"
    BUDGET = "budget"
    CAN_WIN = "can_win"
    WORTH_IT = "worth_it"
    OUR_STRENGTH = "our_strength"


class ContractReviewCheck(StrEnum):
    """Keys of `opportunities.contract_review`: the contract checked before signing."""

    TERMS = "terms"
    LICENCE = "licence"
    BANK_ACCOUNT = "bank_account"


class LostReason(StrEnum):
    """Codes of `opportunities.lost_reason`: why a deal was lost (the short list of `lost`)."""

    PRICE = "price"
    COMPETITOR = "competitor"
    NO_BUDGET = "no_budget"
    NO_DECISION = "no_decision"
    REQUIREMENTS_NOT_MET = "requirements_not_met"
    OTHER = "other"


class LostDetail(StrEnum):
    """Keys of `opportunities.lost_details`: what the `lost` dialog records besides the reason."""

    NOTE = "note"  # the reason in the rep's words
    COMPETITOR = "competitor"  # who won the deal
    LESSON = "lesson"  # what to learn from it


# the stages where a deal has left the funnel: nothing more to nudge, chase or plan
FINISHED_STAGES: frozenset[FunnelStage] = frozenset(
    {FunnelStage.WON, FunnelStage.LOST, FunnelStage.KEEP_IN_TOUCH})
# the finished stages `reopen` brings back into the funnel
REOPENABLE_STAGES: frozenset[FunnelStage] = frozenset(
    {FunnelStage.LOST, FunnelStage.KEEP_IN_TOUCH})


# The one vocabulary of keys inside JSON columns that flows, cards, health, CSV, the demo and
# the proposal all read and write: (table, column) -> its keys. A flow that saves
# `opportunity.qualification.<key>` is refused at start-up unless <key> is listed here.
JSON_KEYS: dict[tuple[str, str], type[StrEnum]] = {
    ("opportunities", "qualification"): QualificationCheck,
    ("opportunities", "contract_review"): ContractReviewCheck,
    ("opportunities", "lost_details"): LostDetail,
}


class Verdict(StrEnum):
    OPPORTUNITY = "opportunity"
    KEEP_IN_TOUCH = "keep_in_touch"


class NeedKind(StrEnum):
    GOAL = "goal"
    PROBLEM = "problem"
    SOLUTION = "solution"
    PRODUCT = "product"
    CRITERION = "criterion"


class SpinKind(StrEnum):
    SITUATION = "S"
    PROBLEM = "P"
    IMPLICATION = "I"
    NEED_PAYOFF = "N"


class ProposalStatus(StrEnum):
    DRAFT = "draft"
    SENT = "sent"
    ACCEPTED = "accepted"
    REJECTED = "rejected"


class InvoiceStatus(StrEnum):
    OPEN = "open"
    PAID = "paid"
    WRITTEN_OFF = "written_off"


class CollectionRung(StrEnum):
    """The dunning ladder, in escalation order."""

    PHONE_GENTLE = "phone_gentle"
    PHONE_FOCUSED = "phone_focused"
    DUNNING_LETTER = "dunning_letter"
    OVERDUE_NOTICE = "overdue_notice"
    VISIT = "visit"
    COMPROMISE = "compromise"
    DEADLINE = "deadline"
    LEGAL = "legal"


class ActivityKind(StrEnum):
    CALL = "call"
    VISIT = "visit"
    MEETING = "meeting"
    MESSAGE = "message"
    EMAIL = "email"
    NOTE = "note"
    STAGE_CHANGE = "stage_change"
    PROPOSAL = "proposal"
    PAYMENT = "payment"


class SubjectType(StrEnum):
    """What a nudge or a dialog session is about."""

    ACCOUNT = "account"
    CONTACT = "contact"
    OPPORTUNITY = "opportunity"
    INVOICE = "invoice"
    USER = "user"


class NudgeStatus(StrEnum):
    PENDING = "pending"
    SENT = "sent"
    DONE = "done"
    SNOOZED = "snoozed"


class OutboxStatus(StrEnum):
    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    DEAD = "dead"


class DialogStatus(StrEnum):
    ACTIVE = "active"
    DONE = "done"
    CANCELLED = "cancelled"
