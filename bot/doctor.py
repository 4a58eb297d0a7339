"""`salescoach doctor`: check a live database against the invariants the coach keeps.

Older versions (and CSV imports) could write records the dialogs now refuse. The doctor reads
the same rules the dialogs obey — the date rules of the flow files (`not_after: now`,
`not_before: <step or fact>`), the JSON key vocabulary of `store.enums.JSON_KEYS`, and the funnel's
meaning of *won* (everything invoiced and collected) — and lists, by record, what breaks them.
`fix` changes only what needs no guess (a legacy key renamed to the one the readers know, the open
next step of a finished deal closed) and says what it changed.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from sqlalchemy import Table, and_, select
from sqlalchemy.orm import Session

from bot.coach import plain
from dialogs.flow import FlowSet, date_bounds
from dialogs.render import Renderer
from store.enums import JSON_KEYS, FunnelStage, QualificationCheck
from store.funnel import money_text, standing, step_label
from store.models import Base, Opportunity

# keys older versions wrote, and the key the readers know them by (a rename, not a guess)
LEGACY_KEYS: Mapping[tuple[str, str], Mapping[str, str]] = {
    ("opportunities", "qualification"): {"worth": QualificationCheck.WORTH_IT.value,
                                         "strength": QualificationCheck.OUR_STRENGTH.value},
}
FINISHED = (FunnelStage.WON.value, FunnelStage.LOST.value)
# the column that names a record, to say which record a problem is about
_LABELS = ("name", "number")


@dataclass(frozen=True)
class DateRule:
    """`table.column` may not lie after today (`bound` None) or before `bound_table.bound_column`
    of the same row, or of the row its foreign key points at."""

    table: str
    column: str
    bound_table: str | None = None
    bound_column: str | None = None


@dataclass
class Problem:
    code: str
    table: str
    record_id: uuid.UUID
    label: str
    params: dict[str, Any] = field(default_factory=dict)
    fixable: bool = False
    fixed: bool = False


def date_rules(flows: FlowSet) -> list[DateRule]:
    """The date rules of every flow that speak about stored facts, once each."""
    rules: dict[tuple[str, str, str | None, str | None], DateRule] = {}
    for flow in flows.flows.values():
        tables = {alias: rec.table for alias, rec in flow.spec.records.items()}
        saves = {s.id: s.save for s in flow.all_steps() if s.save}

        def column(path: str | None, tables: dict[str, str] = tables) -> tuple[str, str] | None:
            if not path or "." not in path:
                return None
            alias, _, col = path.partition(".")
            table = tables.get(alias)
            return (table, col) if table and "." not in col else None

        for step in flow.all_steps():
            target = column(step.save)
            if target is None or step.type != "date":
                continue
            if "now" in date_bounds(step.not_after):
                rules.setdefault((*target, None, None), DateRule(*target))
            for bound in date_bounds(step.not_before):
                if bound == "now":
                    continue  # a plan in the past is allowed once confirmed
                other = column(saves.get(bound, bound))
                if other is not None and other != target:
                    rules.setdefault((*target, *other), DateRule(*target, *other))
    return sorted(rules.values(), key=lambda r: (r.table, r.column, r.bound_table or ""))


def column_labels(flows: FlowSet) -> dict[tuple[str, str], Mapping[str, str]]:
    """`(table, column)` -> the label of the flow step that saves it (en/zh, from the flow)."""
    labels: dict[tuple[str, str], Mapping[str, str]] = {}
    for flow in flows.flows.values():
        tables = {alias: rec.table for alias, rec in flow.spec.records.items()}
        for step in flow.all_steps():
            if step.save and step.label and "." in step.save:
                alias, _, col = step.save.partition(".")
                if alias in tables and "." not in col:
                    labels.setdefault((tables[alias], col), step.label)
    return labels


def _table(name: str) -> Table:
    return Base.metadata.tables[name]


def _label_column(table: Table) -> Any:
    for name in _LABELS:
        if name in table.c:
            return table.c[name]
    return table.c.id


def _join(child: Table, parent: Table) -> Any | None:
    """child.fk == parent.id, when the child names the parent by a foreign key."""
    for fk in child.foreign_keys:
        if fk.column.table is parent:
            return fk.parent == fk.column
    return None


def _org_filter(table: Table, org_id: uuid.UUID | None) -> list[Any]:
    return [table.c.org_id == org_id] if org_id is not None and "org_id" in table.c else []


def _date_problems(session: Session, rules: list[DateRule], today: date,
                   org_id: uuid.UUID | None) -> Iterator[Problem]:
    for rule in rules:
        table = _table(rule.table)
        col, label = table.c[rule.column], _label_column(table)
        if rule.bound_table is None:
            rows = session.execute(
                select(table.c.id, label, col)
                .where(col.is_not(None), col > today, *_org_filter(table, org_id))
                .order_by(label)).all()
            for rid, name, value in rows:
                yield Problem("future", rule.table, rid, str(name),
                              {"column": rule.column, "value": value})
            continue
        other = _table(rule.bound_table)
        assert rule.bound_column is not None
        bound_col = other.c[rule.bound_column]
        if other is table:
            query = select(table.c.id, label, col, bound_col).where(
                col.is_not(None), bound_col.is_not(None), col < bound_col)
        else:
            on = _join(table, other)
            if on is None:
                continue
            query = (select(table.c.id, label, col, bound_col)
                     .join(other, on)
                     .where(col.is_not(None), bound_col.is_not(None), col < bound_col))
        for rid, name, value, bound in session.execute(
                query.where(*_org_filter(table, org_id)).order_by(label)).all():
            yield Problem("order", rule.table, rid, str(name),
                          {"column": rule.column, "value": value,
                           "bound": f"{rule.bound_table}.{rule.bound_column}",
                           "bound_value": bound})


def _json_problems(session: Session, org_id: uuid.UUID | None) -> Iterator[Problem]:
    columns: dict[tuple[str, str], set[str]] = {k: {m.value for m in v}
                                                for k, v in JSON_KEYS.items()}
    # verdict_reasons lists the qualification checks that failed
    columns[("opportunities", "verdict_reasons")] = columns[("opportunities", "qualification")]
    legacy = dict(LEGACY_KEYS)
    legacy[("opportunities", "verdict_reasons")] = LEGACY_KEYS[("opportunities", "qualification")]
    for (table_name, column), known in columns.items():
        table = _table(table_name)
        label = _label_column(table)
        rows = session.execute(select(table.c.id, label, table.c[column])
                               .where(table.c[column].is_not(None),
                                      *_org_filter(table, org_id))
                               .order_by(label)).all()
        renames = legacy.get((table_name, column), {})
        for rid, name, value in rows:
            keys = list(value) if isinstance(value, (dict, list)) else []
            for key in keys:
                if not isinstance(key, str) or key in known:
                    continue
                new = renames.get(key)
                fixable = new is not None and new not in keys
                yield Problem("json_key", table_name, rid, str(name),
                              {"column": column, "name": key, "known": new or ""}, fixable)


def _finished_problems(session: Session, org_id: uuid.UUID | None) -> Iterator[Problem]:
    query = select(Opportunity).where(Opportunity.stage.in_(FINISHED)).order_by(Opportunity.name)
    if org_id is not None:
        query = query.where(Opportunity.org_id == org_id)
    for opp in session.scalars(query):
        if opp.next_step or opp.next_step_due:
            yield Problem("open_next_step", "opportunities", opp.id, opp.name,
                          {"stage": opp.stage, "next_step": opp.next_step or ""}, True)
        if opp.stage != FunnelStage.WON:
            continue
        now = standing(session, opp)
        if not now.has("all_collected"):
            yield Problem("won_not_collected", "opportunities", opp.id, opp.name,
                          {"to_invoice": now.to_invoice, "outstanding": now.outstanding,
                           "currency": opp.currency or ""})


def check(session: Session, flows: FlowSet, today: date,
          org_id: uuid.UUID | None = None) -> list[Problem]:
    """Everything in the database (or one company) that breaks an invariant, by record."""
    found = [*_date_problems(session, date_rules(flows), today, org_id),
             *_json_problems(session, org_id),
             *_finished_problems(session, org_id)]
    return found


def rule_count(flows: FlowSet) -> int:
    """How many rules `check` applies: the flows' date rules, one per JSON column, and the two
    rules of finished deals (next step closed; won means invoiced and collected)."""
    return len(date_rules(flows)) + len(JSON_KEYS) + 1 + 2


def fix(session: Session, problems: list[Problem]) -> list[Problem]:
    """Repair the problems that need no guess; returns those it changed (marked `fixed`)."""
    changed: list[Problem] = []
    for problem in problems:
        if not problem.fixable:
            continue
        table = _table(problem.table)
        if problem.code == "json_key":
            column = problem.params["column"]
            value = session.execute(select(table.c[column])
                                    .where(table.c.id == problem.record_id)).scalar_one()
            key, new = problem.params["name"], problem.params["known"]
            if isinstance(value, dict):
                if new in value or key not in value:
                    continue
                value = {(new if k == key else k): v for k, v in value.items()}
            elif isinstance(value, list):
                if new in value or key not in value:
                    continue
                value = [new if k == key else k for k in value]
            else:
                continue
            session.execute(table.update().where(table.c.id == problem.record_id)
                            .values({column: value}))
        elif problem.code == "open_next_step":
            session.execute(table.update().where(and_(table.c.id == problem.record_id,
                                                      table.c.stage.in_(FINISHED)))
                            .values(next_step=None, next_step_due=None))
        else:
            continue
        problem.fixed = True
        changed.append(problem)
    session.flush()
    return changed


TABLE_KEYS = {"opportunities": "doctor.t.opportunity", "invoices": "doctor.t.invoice",
              "payments": "doctor.t.payment", "accounts": "doctor.t.account",
              "contacts": "doctor.t.contact"}


def describe(problem: Problem, renderer: Renderer, lang: str,
             labels: Mapping[tuple[str, str], Mapping[str, str]]) -> str:
    """One line for a problem, in `lang`: which record, and what is wrong with it."""

    def column(table: str, name: str) -> str:
        texts = labels.get((table, name))
        return plain(renderer.pick(texts, lang)) if texts else name

    params = dict(problem.params)
    if problem.code == "json_key":
        name = f"doctor.c.{params['column']}"
        if name in renderer.catalogs["en"]:
            params["column"] = renderer.text(lang, name)
    elif "column" in params:
        params["column"] = column(problem.table, params["column"])
    if "bound" in params:
        table, _, name = params["bound"].partition(".")
        params["bound"] = column(table, name)
    if "stage" in params:
        params["stage"] = step_label(renderer.text(lang, f"lk.stage.{params['stage']}"),
                                     params["stage"])
    for key in ("to_invoice", "outstanding"):
        if key in params:
            params[key] = money_text(params[key], params.get("currency", ""))
    kind = TABLE_KEYS.get(problem.table)
    record = renderer.text(lang, kind) if kind else problem.table
    ref = problem.label if problem.label != str(problem.record_id) else ""
    line = renderer.text(lang, f"doctor.{problem.code}", **params)
    head = renderer.text(lang, "doctor.record", kind=record, name=ref,
                         id=problem.record_id.hex[:8])
    tail = ""
    if problem.fixed:
        tail = " " + renderer.text(lang, "doctor.was_fixed")
    elif problem.fixable:
        tail = " " + renderer.text(lang, "doctor.can_fix")
    return plain(f"{head}: {line}{tail}")
