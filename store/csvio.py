"""CSV import and export of accounts, contacts, opportunities and invoices.

The file: a header row, then one record per row. Headers are the column names below in English
or in Chinese (any mix, any case); columns may come in any order and optional ones may be left
out (a left-out column is not touched on update). UTF-8 with or without a BOM (Excel's "CSV
UTF-8"). An empty cell clears the field, except `owner` (kept) and the columns with a default.

Every record is keyed by `external_id`, the id in the system the file came from: importing
updates the record with that id, or creates it; importing the same file again changes nothing.
Export writes the same columns, and `external_id` of a record made in chat is its own id, so
export -> import round-trips. References between files use those ids too
(`account_external_id`, `opportunity_external_id`); import accounts before their contacts.

The file is read in batches of `BATCH` rows, so a 100,000-row file is never in memory at once;
each batch is checked, its references and existing records fetched in a few queries, and
written with one INSERT and one UPDATE (executemany). Problems are reported by row (the
spreadsheet's row number, the header being row 1) and column. The caller's unit of work makes
the file atomic: `import_file` rolls everything back when a row was rejected, unless `partial`,
and always on a dry run.
"""

from __future__ import annotations

import csv
import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, TextIO

from sqlalchemy import ColumnElement, Table, bindparam, insert, or_, select, update
from sqlalchemy.orm import Session

from store.db import Database
from store.enums import (
    AccountStatus,
    BuyingPhase,
    BuyingRole,
    CommStyle,
    ContactFunction,
    ContactLevel,
    FunnelStage,
    Industry,
    InsiderLevel,
    InvoiceStatus,
    Nature,
    RelationshipStage,
    SourceMethod,
)
from store.limits import Limit, clean, limit_for
from store.models import Account, Contact, Identity, Invoice, Opportunity, User, name_key

BATCH = 1000
KINDS = ("accounts", "contacts", "opportunities", "invoices")
_CURRENCY = re.compile(r"[A-Z]{3}")
_LIST_SPLIT = re.compile(r"\s*[;,、，；|]\s*")
_NOT_KEPT = 1000  # problems kept in the result (all are passed to `on_problem`)


@dataclass(frozen=True)
class Column:
    name: str
    zh: str
    kind: str = "text"  # text | int | decimal | date | code | codes | currency | owner | ref
    required: bool = False
    codes: tuple[str, ...] = ()
    default: str | None = None
    # for kind "ref": the table referred to; the row's column that holds the reference
    ref: str | None = None
    target: str | None = None
    low: int | None = None
    high: int | None = None


def _codes(enum: Any) -> tuple[str, ...]:
    return tuple(str(member.value) for member in enum)


_EXTERNAL = Column("external_id", "外部编号", required=True)
_OWNER = Column("owner", "负责人", kind="owner", target="owner_id")
_ACCOUNT_REF = Column("account_external_id", "客户外部编号", kind="ref", required=True,
                      ref="accounts", target="account_id")


def _of_account(name_zh: str) -> tuple[Column, ...]:
    """The first columns of an owned record of a customer (contact, opportunity): its id, the
    customer's, its name, its owner."""
    return (_EXTERNAL, _ACCOUNT_REF, Column("name", name_zh, required=True), _OWNER)


COLUMNS: dict[str, tuple[Column, ...]] = {
    "accounts": (
        _EXTERNAL,
        Column("name", "名称", required=True),
        _OWNER,
        Column("status", "状态", kind="code", codes=_codes(AccountStatus), default="active"),
        Column("industry", "行业", kind="code", codes=_codes(Industry)),
        Column("nature", "性质", kind="code", codes=_codes(Nature)),
        Column("size_employees", "员工人数", kind="int", low=0),
        Column("business", "主营业务"),
        Column("source_method", "来源方式", kind="code", codes=_codes(SourceMethod)),
        Column("source_note", "来源说明"),
        Column("last_purchase_qty", "上次采购数量", kind="decimal"),
        Column("last_purchase_amount", "上次采购金额", kind="decimal"),
        Column("last_purchase_currency", "上次采购币种", kind="currency"),
        Column("last_purchase_satisfaction", "上次采购满意度", kind="int", low=1, high=5),
        Column("address", "地址"),
        Column("postcode", "邮编"),
        Column("website", "网站"),
        Column("org_notes", "组织备注"),
    ),
    "contacts": (
        *_of_account("姓名"),
        Column("title", "职务"),
        Column("department", "部门"),
        Column("level", "级别", kind="code", codes=_codes(ContactLevel)),
        Column("function", "职能", kind="code", codes=_codes(ContactFunction)),
        Column("buying_roles", "采购角色", kind="codes", codes=_codes(BuyingRole)),
        Column("insider_level", "内线程度", kind="code", codes=_codes(InsiderLevel)),
        Column("comm_style", "沟通风格", kind="code", codes=_codes(CommStyle)),
        Column("relationship_stage", "关系阶段", kind="code", codes=_codes(RelationshipStage)),
        Column("phone", "电话"),
        Column("email", "邮箱"),
        Column("work_notes", "工作备注"),
        Column("personal_notes", "个人信息"),
    ),
    "opportunities": (
        *_of_account("商机名称"),
        Column("product", "产品"),
        Column("stage", "漏斗阶段", kind="code", codes=_codes(FunnelStage), default="analysis"),
        Column("phase", "采购阶段", kind="code", codes=_codes(BuyingPhase)),
        Column("amount", "金额", kind="decimal", low=0),
        Column("currency", "币种", kind="currency"),
        Column("expected_close", "预计成交日期", kind="date"),
        Column("next_step", "下一步"),
        Column("next_step_due", "下一步日期", kind="date"),
        Column("lost_reason", "丢单原因"),
    ),
    "invoices": (
        _EXTERNAL,
        _ACCOUNT_REF,
        Column("opportunity_external_id", "商机外部编号", kind="ref", ref="opportunities",
               target="opportunity_id"),
        Column("number", "发票号", required=True),
        Column("amount", "金额", kind="decimal", required=True, low=0),
        Column("currency", "币种", kind="currency", default="CNY"),
        Column("issued_on", "开票日期", kind="date", required=True),
        Column("due_on", "到期日期", kind="date", required=True),
        Column("status", "状态", kind="code", codes=_codes(InvoiceStatus), default="open"),
        Column("closed_on", "结清日期", kind="date"),
        Column("note", "备注"),
    ),
}
_MODELS: dict[str, Any] = {"accounts": Account, "contacts": Contact,
                           "opportunities": Opportunity, "invoices": Invoice}
#: a reference's column in the row (`account_id`) -> the table it points into, the file's column
_REFS: dict[str, tuple[str, str]] = {c.target: (c.ref, c.name) for columns in COLUMNS.values()
                                     for c in columns if c.kind == "ref" and c.target and c.ref}


@dataclass(frozen=True)
class Problem:
    """One thing wrong: `row` is the spreadsheet row (header = 1; 0 for the file itself),
    `column` the header as written; `code` names the catalog text `csv.err.<code>`."""

    row: int
    column: str | None
    code: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class ImportResult:
    kind: str
    rows: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    problem_count: int = 0
    problems: list[Problem] = field(default_factory=list)
    dry_run: bool = False
    partial: bool = False
    committed: bool = False
    fatal: bool = False

    def add(self, problem: Problem) -> None:
        self.problem_count += 1
        if len(self.problems) < _NOT_KEPT:
            self.problems.append(problem)


class ImportError_(Exception):
    """The file cannot be imported at all (wrong kind, unreadable header)."""


# ---- reading -------------------------------------------------------------------------------


def _header_map(kind: str, header: list[str], result: ImportResult
                ) -> dict[int, Column] | None:
    by_name: dict[str, Column] = {}
    for col in COLUMNS[kind]:
        by_name[col.name.casefold()] = col
        by_name[col.name.replace("_", " ").casefold()] = col
        by_name[col.zh] = col
    mapping: dict[int, Column] = {}
    seen: set[str] = set()
    for i, raw in enumerate(header):
        title = raw.strip().lstrip("\ufeff")
        if not title:
            continue
        found = by_name.get(title.casefold()) or by_name.get(title)
        if found is None:
            result.add(Problem(1, title, "unknown_column",
                               {"known": ", ".join(c.name for c in COLUMNS[kind])}))
            continue
        if found.name in seen:
            result.add(Problem(1, title, "duplicate_column"))
            continue
        seen.add(found.name)
        mapping[i] = found
    missing = [c.name for c in COLUMNS[kind] if c.required and c.name not in seen]
    for name in missing:
        result.add(Problem(1, name, "missing_column"))
    if missing or len(mapping) != len([h for h in header if h.strip()]):
        return None
    return mapping


def _records(stream: TextIO) -> Iterator[tuple[int, list[str]]]:
    yield from enumerate(csv.reader(stream), start=1)


@dataclass
class _Row:
    number: int
    key: str
    values: dict[str, Any]
    refs: dict[str, str]  # target column -> referenced external key
    owner: str | None
    problems: list[Problem]
    raw_titles: dict[str, str]


def _limit(kind: str, col: Column) -> Limit | None:
    """What the cell's column holds (store/limits.py): a reference is another file's id."""
    if col.kind == "ref" and col.ref:
        return limit_for(col.ref, "external_id")
    if col.kind == "owner":
        return limit_for("users", "display_name")
    return limit_for(kind, col.name)


def _parse_cell(col: Column, text: str, title: str, number: int,
                problems: list[Problem], limit: Limit | None = None) -> Any:
    # NUL and other control characters are dropped (newlines and tabs kept where the column
    # is multi-line); then the cell must fit its column
    value = clean(text, multiline=limit.multiline if limit is not None else True).strip()
    if not value:
        if col.required:
            problems.append(Problem(number, title, "required"))
        return [] if col.kind == "codes" else col.default
    if col.kind in ("text", "owner", "ref"):
        refused = limit.check(value) if limit is not None else None
        if refused is not None:
            problems.append(Problem(number, title, refused.code, refused.params))
            return None
        return value
    if col.kind == "int":
        try:
            number_value = int(value.replace(",", ""))
        except ValueError:
            problems.append(Problem(number, title, "not_integer", {"value": value[:40]}))
            return None
        if (col.low is not None and number_value < col.low) or (
                col.high is not None and number_value > col.high):
            problems.append(Problem(number, title, "out_of_range",
                                    {"value": value[:40], "low": col.low, "high": col.high}))
            return None
        return _fits(number_value, limit, title, number, problems)
    if col.kind == "decimal":
        try:
            amount = Decimal(value.replace(",", "").replace("¥", "").replace("￥", ""))
            if not amount.is_finite():
                raise InvalidOperation
        except InvalidOperation:
            problems.append(Problem(number, title, "not_number", {"value": value[:40]}))
            return None
        if col.low is not None and amount < col.low:
            problems.append(Problem(number, title, "negative", {"value": value[:40]}))
            return None
        return _fits(amount, limit, title, number, problems)
    if col.kind == "date":
        try:
            return date.fromisoformat(value.replace("/", "-"))
        except ValueError:
            problems.append(Problem(number, title, "not_date", {"value": value[:40]}))
            return None
    if col.kind == "currency":
        code = value.upper()
        if not _CURRENCY.fullmatch(code):
            problems.append(Problem(number, title, "bad_currency", {"value": value[:40]}))
            return None
        return code
    if col.kind == "code":
        code = value.casefold().replace(" ", "_").replace("-", "_")
        if code not in col.codes:
            problems.append(Problem(number, title, "bad_code",
                                    {"value": value[:40], "allowed": ", ".join(col.codes)}))
            return None
        return code
    if col.kind == "codes":
        codes = [c.casefold().replace(" ", "_") for c in _LIST_SPLIT.split(value) if c]
        bad = [c for c in codes if c not in col.codes]
        if bad:
            problems.append(Problem(number, title, "bad_code",
                                    {"value": bad[0][:40], "allowed": ", ".join(col.codes)}))
            return None
        return list(dict.fromkeys(codes))
    raise ValueError(f"unknown column kind {col.kind!r}")


def _fits(value: Any, limit: Limit | None, title: str, number: int,
          problems: list[Problem]) -> Any:
    """`value`, or None with a problem when its column cannot hold it."""
    refused = limit.check(value) if limit is not None else None
    if refused is None:
        return value
    problems.append(Problem(number, title, refused.code, refused.params))
    return None


def _parse_row(kind: str, mapping: dict[int, Column], number: int, record: list[str],
               titles: dict[int, str], width: int) -> _Row:
    problems: list[Problem] = []
    values: dict[str, Any] = {}
    refs: dict[str, str] = {}
    owner: str | None = None
    key = ""
    if len(record) > width and any(cell.strip() for cell in record[width:]):
        problems.append(Problem(number, None, "too_many_cells",
                                {"cells": len(record), "columns": width}))
    raw_titles: dict[str, str] = {}
    for i, col in mapping.items():
        text = record[i] if i < len(record) else ""
        title = titles[i]
        raw_titles[col.name] = title
        value = _parse_cell(col, text, title, number, problems, _limit(kind, col))
        if col.name == "external_id":
            key = value or ""
        elif col.kind == "owner":
            owner = value
        elif col.kind == "ref":
            if value:
                refs[col.target or col.name] = value
            else:
                values[col.target or col.name] = None
        else:
            values[col.name] = value
    if kind == "invoices":
        issued, due = values.get("issued_on"), values.get("due_on")
        if isinstance(issued, date) and isinstance(due, date) and due < issued:
            problems.append(Problem(number, raw_titles.get("due_on", "due_on"),
                                    "due_before_issue", {"issued": issued.isoformat()}))
        closed = values.get("closed_on")
        if isinstance(closed, date) and isinstance(issued, date) and closed < issued:
            problems.append(Problem(number, raw_titles.get("closed_on", "closed_on"),
                                    "closed_before_issue", {"issued": issued.isoformat()}))
    return _Row(number, key, values, refs, owner, problems, raw_titles)


# ---- resolving and writing ----------------------------------------------------------------


def _as_uuid(text: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(text)
    except ValueError:
        return None


def _find_by_keys(session: Session, table: Table, org_id: uuid.UUID, keys: set[str],
                  columns: list[str]) -> dict[str, Any]:
    """Rows of `table` whose external id, or (without one) whose own id, is in `keys`."""
    if not keys:
        return {}
    ids = [u for u in (_as_uuid(k) for k in keys) if u is not None]
    match: ColumnElement[bool] = table.c.external_id.in_(sorted(keys))
    if ids:
        match = or_(match, (table.c.external_id.is_(None)) & table.c.id.in_(ids))
    wanted = [table.c.id, table.c.external_id, *[table.c[c] for c in columns]]
    found: dict[str, Any] = {}
    for row in session.execute(select(*wanted).where(table.c.org_id == org_id, match)):
        found[row.external_id if row.external_id is not None else str(row.id)] = row
    return found


class _Owners:
    """Users of the org by display name or platform user id (case-insensitive)."""

    def __init__(self, session: Session, org_id: uuid.UUID) -> None:
        self.names: dict[uuid.UUID, str] = {}
        by_key: dict[str, set[uuid.UUID]] = {}
        for user_id, display, external, username in session.execute(
                select(User.id, User.display_name, Identity.external_id, Identity.username)
                .outerjoin(Identity, Identity.user_id == User.id)
                .where(User.org_id == org_id)):
            self.names[user_id] = display
            for key in (display, external, username):
                if key:
                    by_key.setdefault(key.strip().casefold(), set()).add(user_id)
        self.by_key = by_key

    def find(self, text: str) -> tuple[uuid.UUID | None, bool]:
        """(user id, ambiguous)."""
        found = self.by_key.get(text.strip().casefold(), set())
        if len(found) == 1:
            return next(iter(found)), False
        return None, len(found) > 1


def _same(old: Any, new: Any) -> bool:
    if isinstance(old, Decimal) or isinstance(new, Decimal):
        if old is None or new is None:
            return old is new
        return Decimal(str(old)) == Decimal(str(new))
    if isinstance(old, list) or isinstance(new, list):
        return list(old or []) == list(new or [])
    if (old == "" and new is None) or (old is None and new == ""):
        return True
    return bool(old == new)


class _Importer:
    def __init__(self, session: Session, org_id: uuid.UUID, kind: str, *, now: datetime,
                 default_owner: uuid.UUID | None, result: ImportResult,
                 on_problem: Callable[[Problem], None] | None) -> None:
        self.session = session
        self.org_id = org_id
        self.kind = kind
        self.model = _MODELS[kind]
        self.table: Table = self.model.__table__
        self.now = now
        self.default_owner = default_owner
        self.result = result
        self.on_problem = on_problem
        self.owners = _Owners(session, org_id)
        self.seen_keys: dict[str, int] = {}
        self.seen_numbers: dict[str, int] = {}
        self.managed: list[str] = []

    def problem(self, problem: Problem) -> None:
        self.result.add(problem)
        if self.on_problem is not None:
            self.on_problem(problem)

    def batch(self, rows: list[_Row]) -> None:
        refs_wanted: dict[str, set[str]] = {}
        for row in rows:
            for target, key in row.refs.items():
                refs_wanted.setdefault(_REFS[target][0], set()).add(key)
        refs: dict[str, dict[str, Any]] = {
            table: _find_by_keys(self.session, _MODELS[table].__table__, self.org_id, keys,
                                 ["account_id"] if table == "opportunities" else [])
            for table, keys in refs_wanted.items()}
        columns = sorted({c for row in rows for c in row.values}
                         | {"owner_id", "name_key"}
                         | {c for row in rows for c in row.refs})
        existing = _find_by_keys(self.session, self.table, self.org_id,
                                 {r.key for r in rows if r.key},
                                 [c for c in columns if c in self.table.c])
        taken: dict[str, Any] = {}
        if self.kind == "invoices":
            numbers = {r.values["number"] for r in rows if r.values.get("number")}
            if numbers:
                taken = {n: (ext, rid) for n, ext, rid in self.session.execute(
                    select(Invoice.number, Invoice.external_id, Invoice.id)
                    .where(Invoice.org_id == self.org_id, Invoice.number.in_(sorted(numbers))))}

        inserts: list[dict[str, Any]] = []
        updates: list[dict[str, Any]] = []
        for row in rows:
            problems = list(row.problems)
            if row.key:
                first = self.seen_keys.get(row.key)
                if first is not None:
                    problems.append(Problem(row.number, row.raw_titles.get("external_id"),
                                            "duplicate_key", {"first": first}))
                else:
                    self.seen_keys[row.key] = row.number
            values = dict(row.values)
            for target, key in row.refs.items():
                table, column = _REFS[target]
                found = refs.get(table, {}).get(key)
                title = row.raw_titles.get(column, target)
                if found is None:
                    problems.append(Problem(row.number, title, "unknown_ref", {"key": key}))
                else:
                    values[target] = found.id
            deal = refs.get("opportunities", {}).get(row.refs.get("opportunity_id", ""))
            if deal is not None and values.get("account_id") not in (None, deal.account_id):
                problems.append(Problem(row.number, row.raw_titles.get(
                    "opportunity_external_id", "opportunity_external_id"), "other_customer",
                    {"ref": row.refs["opportunity_id"]}))
            current = existing.get(row.key)
            if row.owner:
                owner_id, ambiguous = self.owners.find(row.owner)
                if owner_id is None:
                    problems.append(Problem(row.number, row.raw_titles.get("owner", "owner"),
                                            "ambiguous_owner" if ambiguous else "unknown_owner",
                                            {"value": row.owner[:60]}))
                else:
                    values["owner_id"] = owner_id
            elif current is None and "owner_id" in self.table.c:
                if self.default_owner is None:
                    problems.append(Problem(row.number, row.raw_titles.get("owner", "owner"),
                                            "owner_needed"))
                else:
                    values["owner_id"] = self.default_owner
            if self.kind == "invoices" and values.get("number"):
                number = values["number"]
                holder = taken.get(number)
                mine = current is not None and holder is not None and holder[1] == current.id
                first_number = self.seen_numbers.get(number)
                if (holder is not None and not mine) or first_number is not None:
                    problems.append(Problem(row.number, row.raw_titles.get("number", "number"),
                                            "number_taken", {"number": number}))
                self.seen_numbers.setdefault(number, row.number)
            if problems:
                self.result.rejected += 1
                for problem in problems:
                    self.problem(problem)
                continue
            if "name" in values and "name_key" in self.table.c:
                values["name_key"] = name_key(values["name"])
            if current is None:
                values.update(id=uuid.uuid4(), org_id=self.org_id, external_id=row.key,
                              created_at=self.now, updated_at=self.now)
                if self.kind == "opportunities":
                    values["stage_entered_at"] = self.now
                inserts.append(values)
                self.result.created += 1
                continue
            changed = {c: v for c, v in values.items()
                       if c in self.table.c and not _same(getattr(current, c, None), v)}
            if not changed:
                self.result.unchanged += 1
                continue
            if self.kind == "opportunities" and "stage" in changed:
                changed["stage_entered_at"] = self.now
            changed["updated_at"] = self.now
            updates.append({"_id": current.id, **changed})
            self.result.updated += 1
        for group in _group_by_columns(inserts).values():
            self.session.execute(insert(self.table), group)
        for shape, group in _group_by_columns(updates).items():
            stmt = (update(self.table).where(self.table.c.id == bindparam("_id"))
                    .values({c: bindparam(c) for c in shape if c != "_id"}))
            self.session.connection().execute(stmt, group)


def _group_by_columns(rows: list[dict[str, Any]]) -> dict[tuple[str, ...], list[dict[str, Any]]]:
    """executemany needs the same columns in every parameter set."""
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(tuple(sorted(row)), []).append(row)
    return groups


def import_csv(session: Session, *, org_id: uuid.UUID, kind: str, stream: TextIO,
               now: datetime, default_owner: uuid.UUID | None = None,
               on_problem: Callable[[Problem], None] | None = None,
               result: ImportResult | None = None) -> ImportResult:
    """Read `stream` and upsert its rows in the caller's unit of work (never commits)."""
    if kind not in COLUMNS:
        raise ImportError_(f"unknown kind {kind!r}; one of {', '.join(KINDS)}")
    result = result or ImportResult(kind)

    def unreadable(*problems: Problem) -> ImportResult:
        """The file cannot be imported at all: say why, to the result and the caller."""
        result.fatal = True
        for problem in problems:
            result.add(problem)
            if on_problem is not None:
                on_problem(problem)
        return result

    records = _records(stream)
    try:
        first = next(records, None)
    except UnicodeDecodeError:
        return unreadable(Problem(1, None, "not_utf8"))
    if first is None:
        return unreadable(Problem(0, None, "empty"))
    header = first[1]
    header_problems = ImportResult(kind)
    mapping = _header_map(kind, header, header_problems)
    if mapping is None:
        return unreadable(*header_problems.problems)
    titles = {i: header[i].strip().lstrip("\ufeff") for i in mapping}
    importer = _Importer(session, org_id, kind, now=now, default_owner=default_owner,
                         result=result, on_problem=on_problem)
    pending: list[_Row] = []
    number = 1
    try:
        for number, record in records:
            if not any(cell.strip() for cell in record):
                continue  # a blank line (Excel leaves some at the end)
            result.rows += 1
            pending.append(_parse_row(kind, mapping, number, record, titles, len(header)))
            if len(pending) >= BATCH:
                importer.batch(pending)
                pending = []
    except UnicodeDecodeError:
        result.fatal = True
        importer.problem(Problem(number + 1, None, "not_utf8"))
        return result
    except csv.Error as exc:
        result.fatal = True
        importer.problem(Problem(number + 1, None, "bad_csv", {"detail": str(exc)[:120]}))
        return result
    if pending:
        importer.batch(pending)
    session.flush()
    return result


class _Rollback(Exception):
    def __init__(self, result: ImportResult) -> None:
        super().__init__("rolled back")
        self.result = result


async def import_file(db: Database, path: Path, *, org_id: uuid.UUID, kind: str,
                      now: datetime, default_owner: uuid.UUID | None = None,
                      dry_run: bool = False, partial: bool = False,
                      on_problem: Callable[[Problem], None] | None = None,
                      actor: str | None = None, user_id: uuid.UUID | None = None
                      ) -> ImportResult:
    """Import one file as one unit of work: all or nothing (unless `partial`), nothing on a
    dry run. The import is recorded in the audit log."""
    from store.privacy import audit

    def work(session: Session) -> ImportResult:
        result = ImportResult(kind, dry_run=dry_run, partial=partial)
        with path.open(encoding="utf-8-sig", newline="") as stream:
            import_csv(session, org_id=org_id, kind=kind, stream=stream, now=now,
                       default_owner=default_owner, on_problem=on_problem, result=result)
        if dry_run or result.fatal or (result.rejected and not partial):
            raise _Rollback(result)
        audit(session, org_id=org_id, action="import", subject_type=kind, subject_id=None,
              now=now, user_id=user_id, actor=actor,
              detail={"file": path.name, "created": result.created, "updated": result.updated,
                      "unchanged": result.unchanged, "rejected": result.rejected})
        result.committed = True
        return result

    try:
        return await db.run(work)
    except _Rollback as rollback:
        return rollback.result


# ---- export --------------------------------------------------------------------------------


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, Decimal):
        text = format(value.normalize(), "f") if value == value.to_integral_value() \
            else format(value, "f")
        return text
    if isinstance(value, date | datetime):
        return value.isoformat()
    if isinstance(value, list):
        return ";".join(str(v) for v in value)
    return str(value)


def export_csv(session: Session, *, org_id: uuid.UUID, kind: str, out: TextIO,
               headers: str = "en", page: int = 2000) -> int:
    """Write every record of `kind` in the org as CSV (the import's columns); rows written.

    Read page by page in id order, so the export is never all in memory."""
    if kind not in COLUMNS:
        raise ImportError_(f"unknown kind {kind!r}; one of {', '.join(KINDS)}")
    columns = COLUMNS[kind]
    model = _MODELS[kind]
    table: Table = model.__table__
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([c.zh if headers == "zh" else c.name for c in columns])
    users: Table = User.__table__  # type: ignore[assignment]
    query = select(table)
    for col in columns:
        if col.kind == "ref" and col.ref and col.target:  # the referred record's key
            ref = _MODELS[col.ref].__table__.alias(col.name)
            query = query.add_columns(ref.c.external_id.label(f"_{col.name}"),
                                      ref.c.id.label(f"_{col.name}_id")).outerjoin(
                ref, ref.c.id == table.c[col.target])
    if "owner_id" in table.c:
        own = users.alias("own")
        query = query.add_columns(own.c.display_name.label("_owner")).outerjoin(
            own, own.c.id == table.c.owner_id)
    written = 0
    last: uuid.UUID | None = None
    while True:
        page_query = query.where(table.c.org_id == org_id).order_by(table.c.id).limit(page)
        if last is not None:
            page_query = page_query.where(table.c.id > last)
        rows = session.execute(page_query).all()
        if not rows:
            return written
        for row in rows:
            m = row._mapping
            out_row = []
            for col in columns:
                if col.name == "external_id":
                    value: Any = m["external_id"] or str(m["id"])
                elif col.kind == "ref":  # a record made in chat is known by its own id
                    ref_id = m[f"_{col.name}_id"]
                    value = (m[f"_{col.name}"] or str(ref_id)) if ref_id else None
                elif col.kind == "owner":
                    value = m["_owner"]
                else:
                    value = m[col.name]
                out_row.append(_cell(value))
            writer.writerow(out_row)
            written += 1
        last = rows[-1]._mapping["id"]


async def export_file(db: Database, out: TextIO, *, org_id: uuid.UUID, kind: str, now: datetime,
                      headers: str = "en", actor: str | None = None,
                      user_id: uuid.UUID | None = None) -> int:
    """Export one kind as one read; exporting contacts (personal data) is audited."""
    from store.privacy import audit

    def work(session: Session) -> int:
        written = export_csv(session, org_id=org_id, kind=kind, out=out, headers=headers)
        if kind == "contacts":
            audit(session, org_id=org_id, action="export", subject_type="contacts",
                  subject_id=None, now=now, user_id=user_id, actor=actor,
                  detail={"rows": written})
        return written

    return await db.run(work)
