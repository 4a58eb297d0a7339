"""The seven-part proposal (建议书): gather what was recorded, render it as Markdown and .docx.

`gather` reads one opportunity and everything recorded about it in a fixed number of queries
(one per table, never one per row) into plain frozen values, `ProposalData`. `ProposalWriter`
turns that into a Markdown text and a .docx file; it does no I/O besides reading its templates
once, so tests and the benchmark call it directly. `record` stores a new proposal version.

Templates are jinja2 and replaceable: the defaults ship as `dialogs/templates/proposal_md.j2`
(and an optional `proposal_docx.j2`); a directory named by `SALESCOACH_TEMPLATES_DIR` is
searched first, and `{% extends "default/proposal_md.j2" %}` reuses the shipped one block by
block. One template written in a small Markdown subset drives both outputs:

- For the .md file, every value is escaped for Markdown: `& < >` become entities and Markdown
  punctuation gets a backslash, so user text can neither add markup nor HTML.
- For the .docx, the same template renders again with values escaped only with backslashes,
  and the lines are read as blocks: `#` title, `##`/`###` headings, `- ` bullets, `1. ` numbered
  lines, `> ` quotes, `| a | b |` table rows (a `|---|` row is skipped; the first row is the
  header), `---` a page break, other lines paragraphs (joined until a blank line), `**bold**`
  and `*italic*` inside. User text arrives in the document as plain run text, exactly as typed.

Contacts' personal notes (and their phone, e-mail, insider level and communication style) are
never read: the proposal goes to the customer. Of the SWOT only strengths and opportunities
are used; weaknesses and threats stay internal (the reply counts them so the rep can answer them).
"""

from __future__ import annotations

import io
import re
import unicodedata
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import (
    ChoiceLoader,
    Environment,
    FileSystemLoader,
    PrefixLoader,
    StrictUndefined,
    Template,
    TemplateError,
)
from markupsafe import Markup
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from dialogs.errors import CoachError
from dialogs.flow import FLOWS_DIR, load_vocab
from dialogs.render import TEMPLATES_DIR
from store import records
from store.enums import ActivityKind
from store.models import (
    Account,
    BuyingSignal,
    CompetitorNote,
    Contact,
    FabEntry,
    Need,
    Opportunity,
    Org,
    Proposal,
    SpinEntry,
    SwotEntry,
    User,
)

#: the seven parts of METHODOLOGY.md, in order (also the `part` codes of `proposals.sections`)
PARTS: tuple[str, ...] = (
    "current_state", "problems", "products", "implementation", "quotation", "response",
    "credentials",
)
MARKDOWN_TEMPLATE = "proposal_md.j2"
DOCX_TEMPLATE = "proposal_docx.j2"  # optional; the Markdown template is used when absent
MD_MIME = "text/markdown"
DOCX_MIME = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
QUOTE_VALID_DAYS = 30
ROLE_ORDER = ("decision_maker", "initiator", "designer", "evaluator", "user")


class ProposalTemplateError(CoachError):
    """A proposal template that cannot be loaded or rendered; the message names it."""


# --- the gathered data ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AccountInfo:
    name: str
    industry: str | None = None
    nature: str | None = None
    size_employees: int | None = None
    business: str | None = None
    last_purchase_qty: Decimal | None = None
    last_purchase_amount: Decimal | None = None
    last_purchase_currency: str | None = None
    last_purchase_satisfaction: int | None = None
    address: str | None = None
    postcode: str | None = None
    website: str | None = None
    purchase_departments: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class OpportunityInfo:
    name: str
    product: str | None = None
    stage: str = "analysis"
    phase: str | None = None
    amount: Decimal | None = None
    currency: str | None = None
    expected_close: date | None = None
    next_step: str | None = None
    next_step_due: date | None = None


@dataclass(frozen=True, slots=True)
class ContactInfo:
    """What a proposal may say about a person: no personal notes, no private details."""

    id: uuid.UUID
    name: str
    title: str | None = None
    department: str | None = None
    level: str | None = None
    function: str | None = None
    buying_roles: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class CompetitorInfo:
    competitor: str
    product: str | None = None
    strengths: str | None = None
    weaknesses: str | None = None


@dataclass(frozen=True, slots=True)
class NeedInfo:
    id: uuid.UUID
    kind: str
    text: str
    parent_id: uuid.UUID | None = None
    contact_id: uuid.UUID | None = None
    depth: int = 0


@dataclass(frozen=True, slots=True)
class SpinInfo:
    kind: str
    question: str
    answer: str | None = None
    contact_id: uuid.UUID | None = None


@dataclass(frozen=True, slots=True)
class SwotInfo:
    quadrant: str
    text: str
    source: str | None = None


@dataclass(frozen=True, slots=True)
class FabInfo:
    product: str
    feature: str
    advantage: str | None = None
    benefit: str | None = None
    need_id: uuid.UUID | None = None


@dataclass(frozen=True, slots=True)
class SignalInfo:
    signal: str
    note: str | None = None
    contact_id: uuid.UUID | None = None
    observed_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class ProposalData:
    """Everything one proposal is built from; `seller` is the org's name."""

    opportunity_id: uuid.UUID
    account_id: uuid.UUID
    seller: str
    owner: str
    account: AccountInfo
    opportunity: OpportunityInfo
    contacts: tuple[ContactInfo, ...] = ()
    competitors: tuple[CompetitorInfo, ...] = ()
    needs: tuple[NeedInfo, ...] = ()
    spin: tuple[SpinInfo, ...] = ()
    swot: tuple[SwotInfo, ...] = ()
    fab: tuple[FabInfo, ...] = ()
    signals: tuple[SignalInfo, ...] = ()


def _tree(rows: Sequence[NeedInfo]) -> tuple[NeedInfo, ...]:
    """The needs in tree order (parents before their children), each with its depth."""
    ids = {row.id for row in rows}
    children: dict[uuid.UUID | None, list[NeedInfo]] = {}
    for row in rows:
        parent = row.parent_id if row.parent_id in ids else None
        children.setdefault(parent, []).append(row)
    out: list[NeedInfo] = []
    stack: list[tuple[NeedInfo, int]] = [(r, 0) for r in reversed(children.get(None, []))]
    while stack:
        row, depth = stack.pop()
        out.append(NeedInfo(row.id, row.kind, row.text, row.parent_id, row.contact_id, depth))
        stack.extend((c, depth + 1) for c in reversed(children.get(row.id, [])))
    return tuple(out)


def gather(session: Session, org_id: uuid.UUID, opportunity_id: uuid.UUID) -> ProposalData | None:
    """One opportunity and what was recorded for it: eight queries, whatever the row counts."""
    head = session.execute(
        select(Opportunity.id, Opportunity.account_id, Opportunity.name, Opportunity.product,
               Opportunity.stage, Opportunity.phase, Opportunity.amount, Opportunity.currency,
               Opportunity.expected_close, Opportunity.next_step, Opportunity.next_step_due,
               Org.name, User.display_name, Account.name, Account.industry, Account.nature,
               Account.size_employees, Account.business, Account.last_purchase_qty,
               Account.last_purchase_amount, Account.last_purchase_currency,
               Account.last_purchase_satisfaction, Account.address, Account.postcode,
               Account.website, Account.purchase_departments)
        .join(Account, Account.id == Opportunity.account_id)
        .join(Org, Org.id == Opportunity.org_id)
        .join(User, User.id == Opportunity.owner_id)
        .where(Opportunity.id == opportunity_id, Opportunity.org_id == org_id)
    ).first()
    if head is None:
        return None
    (_, account_id, name, product, stage, phase, amount, currency, expected_close, next_step,
     next_step_due, seller, owner, account_name, industry, nature, size, business, last_qty,
     last_amount, last_currency, satisfaction, address, postcode, website, departments) = head
    opportunity = OpportunityInfo(name, product, stage, phase, amount, currency, expected_close,
                                  next_step, next_step_due)
    account = AccountInfo(account_name, industry, nature, size, business, last_qty, last_amount,
                          last_currency, satisfaction, address, postcode, website,
                          tuple(departments or ()))
    # Only the columns a customer may read: never personal_notes, phone, e-mail or our notes.
    contacts = tuple(
        ContactInfo(r[0], r[1], r[2], r[3], r[4], r[5], tuple(r[6] or ()))
        for r in session.execute(
            select(Contact.id, Contact.name, Contact.title, Contact.department, Contact.level,
                   Contact.function, Contact.buying_roles)
            .where(Contact.account_id == account_id, Contact.org_id == org_id)
            .order_by(Contact.name, Contact.id))
    )
    competitors = tuple(
        CompetitorInfo(*r) for r in session.execute(
            select(CompetitorNote.competitor, CompetitorNote.product, CompetitorNote.strengths,
                   CompetitorNote.weaknesses)
            .where(CompetitorNote.account_id == account_id, CompetitorNote.org_id == org_id)
            .order_by(CompetitorNote.created_at, CompetitorNote.id))
    )
    needs = _tree([
        NeedInfo(r[0], r[1], r[2], r[3], r[4]) for r in session.execute(
            select(Need.id, Need.kind, Need.text, Need.parent_id, Need.contact_id)
            .where(Need.opportunity_id == opportunity_id, Need.org_id == org_id)
            .order_by(Need.position, Need.created_at, Need.id))
    ])
    spin = tuple(
        SpinInfo(*r) for r in session.execute(
            select(SpinEntry.kind, SpinEntry.question, SpinEntry.answer, SpinEntry.contact_id)
            .where(SpinEntry.opportunity_id == opportunity_id, SpinEntry.org_id == org_id)
            .order_by(SpinEntry.asked_at, SpinEntry.created_at, SpinEntry.id))
    )
    swot = tuple(
        SwotInfo(*r) for r in session.execute(
            select(SwotEntry.quadrant, SwotEntry.text, SwotEntry.source)
            .where(SwotEntry.opportunity_id == opportunity_id, SwotEntry.org_id == org_id)
            .order_by(SwotEntry.created_at, SwotEntry.id))
    )
    fab = tuple(
        FabInfo(*r) for r in session.execute(
            select(FabEntry.product, FabEntry.feature, FabEntry.advantage, FabEntry.benefit,
                   FabEntry.need_id)
            .where(FabEntry.opportunity_id == opportunity_id, FabEntry.org_id == org_id)
            .order_by(FabEntry.position, FabEntry.created_at, FabEntry.id))
    )
    signals = tuple(
        SignalInfo(*r) for r in session.execute(
            select(BuyingSignal.signal, BuyingSignal.note, BuyingSignal.contact_id,
                   BuyingSignal.observed_at)
            .where(BuyingSignal.opportunity_id == opportunity_id, BuyingSignal.org_id == org_id)
            .order_by(BuyingSignal.observed_at, BuyingSignal.id))
    )
    return ProposalData(
        opportunity_id=opportunity_id, account_id=account_id, seller=seller, owner=owner,
        account=account, opportunity=opportunity, contacts=contacts, competitors=competitors,
        needs=needs, spin=spin, swot=swot, fab=fab, signals=signals)


# --- escaping -------------------------------------------------------------------------------

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_PUNCT = re.compile(r"([\\`*_\[\]|~])")
# a value placed at the start of a line must not start a block (heading, list, quote, table)
_LEADING = re.compile(r"^(?:([#+\-=>|])|(\d+)([.)]))")


def clean(value: object) -> str:
    """A value as one line of text: control characters dropped, whitespace collapsed."""
    return " ".join(_CONTROL.sub("", str(value)).split())


def _escape_leading(text: str) -> str:
    def mark(m: re.Match[str]) -> str:
        return f"\\{m.group(1)}" if m.group(1) else f"{m.group(2)}\\{m.group(3)}"

    return _LEADING.sub(mark, text, count=1)


def plain_escape(value: object) -> Markup:
    """A value for the .docx source: backslash-escaped, so the block reader takes it literally."""
    if isinstance(value, Markup):
        return value
    if value is None:
        return Markup("")
    return Markup(_escape_leading(_PUNCT.sub(r"\\\1", clean(value))))


def markdown_escape(value: object) -> Markup:
    """A value for the Markdown file: no markup, no HTML, shown as typed."""
    if isinstance(value, Markup):
        return value
    if value is None:
        return Markup("")
    text = _PUNCT.sub(r"\\\1", clean(value))
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return Markup(_escape_leading(text))


# --- the .docx block reader -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Block:
    """One block of the document: heading (level 0-3), paragraph, bullet, number, quote,
    table (`rows` of cells) or page break."""

    kind: str
    text: str = ""
    level: int = 0
    rows: tuple[tuple[str, ...], ...] = ()


_HEADING = re.compile(r"^(#{1,4})\s+(.*)$")
_BULLET = re.compile(r"^[-*+]\s+(.*)$")
_NUMBER = re.compile(r"^(\d+)[.)]\s+(.*)$")
_SEPARATOR = re.compile(r"^\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)*\|?$")
_CELL_SPLIT = re.compile(r"(?<!\\)\|")
_INLINE = re.compile(r"\\([!-/:-@\[-`{-~])|(\*\*)|(\*)|([^\\*]+)|(\\)")


def _cells(line: str) -> tuple[str, ...]:
    body = line.strip()
    body = body[1:] if body.startswith("|") else body
    if body.endswith("|") and not body.endswith("\\|"):
        body = body[:-1]
    return tuple(cell.strip() for cell in _CELL_SPLIT.split(body))


def read_blocks(source: str) -> list[Block]:
    """The Markdown subset of the templates, as blocks (inline markup still in `text`)."""
    blocks: list[Block] = []
    para: list[str] = []
    table: list[tuple[str, ...]] = []

    def flush() -> None:
        if para:
            blocks.append(Block("paragraph", " ".join(para)))
            para.clear()
        if table:
            blocks.append(Block("table", rows=tuple(table)))
            table.clear()

    for raw in source.splitlines():
        line = raw.strip()
        if line.startswith("|"):
            if para:
                flush()
            if not _SEPARATOR.match(line):
                table.append(_cells(line))
            continue
        if table:
            flush()
        if not line:
            flush()
        elif re.fullmatch(r"-{3,}|\*{3,}", line):
            flush()
            blocks.append(Block("pagebreak"))
        elif m := _HEADING.match(line):
            flush()
            blocks.append(Block("heading", m.group(2), level=len(m.group(1)) - 1))
        elif m := _BULLET.match(line):
            flush()
            blocks.append(Block("bullet", m.group(1)))
        elif m := _NUMBER.match(line):
            flush()
            blocks.append(Block("number", m.group(2), level=int(m.group(1))))
        elif line.startswith(">"):
            flush()
            blocks.append(Block("quote", line[1:].strip()))
        else:
            para.append(line)
    flush()
    return blocks


def inline_runs(text: str) -> list[tuple[str, bool, bool]]:
    """(text, bold, italic) runs of one line: `**` and `*` toggle, `\\x` is a literal x."""
    runs: list[tuple[str, bool, bool]] = []
    bold = italic = False
    buffer: list[str] = []

    def emit() -> None:
        if buffer:
            runs.append(("".join(buffer), bold, italic))
            buffer.clear()

    for m in _INLINE.finditer(text):
        escaped, strong, emphasis, chunk, lone = m.groups()
        if escaped is not None:
            buffer.append(escaped)
        elif strong:
            emit()
            bold = not bold
        elif emphasis:
            emit()
            italic = not italic
        else:
            buffer.append(chunk if chunk is not None else lone)
    emit()
    return runs


def _east_asian(style: Any, font: str) -> None:
    """Give a style an East Asian font, so Chinese text is set in a Chinese face."""
    from docx.oxml.ns import qn

    rpr = style.element.get_or_add_rPr()
    fonts = rpr.find(qn("w:rFonts"))
    if fonts is None:
        fonts = rpr.makeelement(qn("w:rFonts"), {})
        rpr.append(fonts)
    fonts.set(qn("w:eastAsia"), font)


def build_docx(blocks: Iterable[Block], *, title: str, author: str, lang: str) -> bytes:
    """A .docx of the blocks; all text goes into runs as plain text."""
    from docx import Document
    from docx.enum.text import WD_BREAK
    from docx.oxml.ns import qn

    R, RPR, B, ITALIC, T, SPACE = (qn("w:r"), qn("w:rPr"), qn("w:b"), qn("w:i"), qn("w:t"),
                                   qn("xml:space"))
    PPR, PSTYLE, VAL = qn("w:pPr"), qn("w:pStyle"), qn("w:val")

    document = Document()
    document.core_properties.title = title[:255]
    document.core_properties.author = author[:255]
    document.core_properties.language = "zh-CN" if lang == "zh" else "en"
    styles = document.styles
    for name in ("Normal", "Title", "Heading 1", "Heading 2", "Heading 3"):
        _east_asian(styles[name], "Microsoft YaHei")
    # python-docx resolves a style name by scanning every style of the document each time it is
    # set (about 2 ms apiece); look each one up once and set the paragraph's style id directly
    style_ids = {name: styles[name].style_id for name in (
        "Title", "Heading 1", "Heading 2", "Heading 3", "List Bullet", "Quote")}
    grid = styles["Table Grid"].style_id

    def paragraph(style: str | None = None) -> Any:
        made = document.add_paragraph()
        if style is not None:  # a fresh paragraph: its properties go first
            props = made._p.makeelement(PPR, {})
            props.append(props.makeelement(PSTYLE, {VAL: style_ids[style]}))
            made._p.insert(0, props)
        return made

    def fill(target: Any, text: str) -> None:
        # runs are appended as elements: python-docx's add_run finds each child's place in the
        # schema order with XPath, which costs more than the rest of the document together
        p = target._p
        for chunk, bold, italic in inline_runs(text):
            run = p.makeelement(R, {})
            if bold or italic:
                props = run.makeelement(RPR, {})
                if bold:
                    props.append(props.makeelement(B, {}))
                if italic:
                    props.append(props.makeelement(ITALIC, {}))
                run.append(props)
            node = run.makeelement(T, {SPACE: "preserve"})
            node.text = chunk
            run.append(node)
            p.append(run)

    headings = ("Title", "Heading 1", "Heading 2", "Heading 3")
    for block in blocks:
        if block.kind == "heading":
            fill(paragraph(headings[min(block.level, 3)]), block.text)
        elif block.kind == "bullet":
            fill(paragraph("List Bullet"), block.text)
        elif block.kind == "number":
            fill(paragraph(), f"{block.level}. {block.text}")
        elif block.kind == "quote":
            fill(paragraph("Quote"), block.text)
        elif block.kind == "pagebreak":
            paragraph().add_run().add_break(WD_BREAK.PAGE)
        elif block.kind == "table":
            width = max(len(row) for row in block.rows)
            table = document.add_table(rows=len(block.rows), cols=width)
            table._tbl.tblPr.style = grid
            for index, (row, cells) in enumerate(zip(block.rows, table.rows, strict=True)):
                for cell, text in zip(cells.cells, row, strict=False):
                    fill(cell.paragraphs[0], f"**{text}**" if index == 0 and text else text)
        else:
            fill(paragraph(), block.text)
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


# --- rendering ------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _vocab_labels() -> dict[str, dict[str, dict[str, str]]]:
    """Option labels of the flows' shared vocabulary: list -> code -> lang -> label."""
    vocab = load_vocab(FLOWS_DIR / "vocab.yaml")
    return {name: {o.value: {"en": o.en, "zh": o.zh} for o in opts}
            for name, opts in vocab.items()}


@dataclass(frozen=True)
class Rendered:
    """One generated proposal: both files, the title and the per-part summary."""

    title: str
    markdown: str
    docx: bytes
    sections: tuple[dict[str, str], ...]
    counts: Mapping[str, int] = field(default_factory=dict)


class ProposalWriter:
    """Renders `ProposalData` through the (replaceable) templates. Built once at start-up."""

    def __init__(self, catalogs: Mapping[str, Mapping[str, str]],
                 templates_dir: Path | None = None) -> None:
        self.catalogs = catalogs
        loaders: list[Any] = []
        if templates_dir is not None:
            if not templates_dir.is_dir():
                raise ProposalTemplateError(
                    f"SALESCOACH_TEMPLATES_DIR={templates_dir}: not a directory")
            loaders.append(FileSystemLoader(str(templates_dir)))
        loaders.append(FileSystemLoader(str(TEMPLATES_DIR)))
        loader = ChoiceLoader([*loaders, PrefixLoader(
            {"default": FileSystemLoader(str(TEMPLATES_DIR))})])
        options: dict[str, Any] = {"loader": loader, "trim_blocks": True,
                                   "lstrip_blocks": True, "undefined": StrictUndefined}
        self.markdown_env = Environment(autoescape=True, finalize=markdown_escape, **options)
        self.docx_env = Environment(autoescape=False, finalize=plain_escape, **options)
        self._texts: dict[tuple[int, str], Template] = {}
        try:
            self.markdown_template = self.markdown_env.get_template(MARKDOWN_TEMPLATE)
            self.docx_template = self.docx_env.select_template([DOCX_TEMPLATE, MARKDOWN_TEMPLATE])
        except TemplateError as exc:
            where = getattr(exc, "filename", None) or getattr(exc, "name", None) or ""
            line = getattr(exc, "lineno", None)
            where += f", line {line}" if line else ""
            raise ProposalTemplateError(f"proposal template {where}: {exc}") from exc

    # catalog texts are trusted templates, rendered in the target's escaping
    def _text(self, env: Environment, lang: str, key: str, **params: Any) -> Markup:
        catalog = self.catalogs.get(lang) or self.catalogs["en"]
        source = catalog.get(key, self.catalogs["en"].get(key))
        if source is None:
            raise ProposalTemplateError(f"no text '{key}' in the catalogs")
        compiled = self._texts.get((id(env), source))
        if compiled is None:
            compiled = self._texts[(id(env), source)] = env.from_string(source)
        return Markup(compiled.render(**params).strip())

    def has_text(self, lang: str, key: str) -> bool:
        return key in (self.catalogs.get(lang) or {}) or key in self.catalogs["en"]

    def label(self, lang: str, kind: str, code: str | None) -> str:
        """A code's label: the flows' vocabulary, else this module's catalog, else the code."""
        if not code:
            return ""
        for name in (kind, f"{kind}s"):
            found = _vocab_labels().get(name, {}).get(code)
            if found:
                return found.get(lang) or found["en"]
        key = f"proposal.code.{kind}.{code}"
        if self.has_text(lang, key):
            return str(self._text(self.docx_env, lang, key))
        return code.replace("_", " ")

    def context(self, data: ProposalData, lang: str, today: date, env: Environment,
                version: int = 1) -> dict[str, Any]:
        """What the templates see: the data, grouped per part, with label and text helpers."""
        def t(key: str, **params: Any) -> Markup:
            return self._text(env, lang, key, **params)

        def label(kind: str, code: str | None) -> str:
            return self.label(lang, kind, code)

        names = {c.id: c.name for c in data.contacts}

        def who(contact_id: uuid.UUID | None) -> str | None:
            return names.get(contact_id) if contact_id is not None else None

        needs_by_id = {n.id: n for n in data.needs}
        by_kind: dict[str, list[NeedInfo]] = {}
        for need in data.needs:
            by_kind.setdefault(need.kind, []).append(need)
        spin: dict[str, list[dict[str, Any]]] = {k: [] for k in "SPIN"}
        for asked in data.spin:
            if asked.answer and asked.kind in spin:
                spin[asked.kind].append({"question": asked.question, "answer": asked.answer,
                                         "contact": who(asked.contact_id)})
        swot: dict[str, list[dict[str, str]]] = {k: [] for k in "swot"}
        for item in data.swot:
            if item.quadrant in swot:
                swot[item.quadrant].append({"text": item.text,
                                            "source": label("swot_source", item.source)})
        extra_roles = sorted({r for c in data.contacts for r in c.buying_roles} - set(ROLE_ORDER))
        roles: list[dict[str, Any]] = []
        for role in (*ROLE_ORDER, *extra_roles):
            people = [c for c in data.contacts if role in c.buying_roles]
            if people:
                roles.append({"role": role, "label": label("buying_role", role),
                              "contacts": people})
        fab: list[dict[str, Any]] = [
            {"product": e.product, "feature": e.feature, "advantage": e.advantage,
             "benefit": e.benefit, "need_id": e.need_id,
             "need": needs_by_id[e.need_id].text if e.need_id in needs_by_id else None}
            for e in data.fab]
        products: dict[str, list[dict[str, Any]]] = {}
        for entry in fab:
            products.setdefault(entry["product"], []).append(entry)
        part_titles = {p: t(f"proposal.part.{p}") for p in PARTS}
        signals: list[dict[str, Any]] = []
        for s in data.signals:
            answered_in = _answering_part(s.signal)
            signals.append({"signal": s.signal, "label": label("signal", s.signal),
                            "note": s.note, "contact": who(s.contact_id), "part": answered_in,
                            "part_number": PARTS.index(answered_in) + 1,
                            "part_title": part_titles[answered_in]})
        criteria: list[dict[str, Any]] = [{"text": n.text, "contact": who(n.contact_id),
                     "fab": [e for e in fab if e["need_id"] == n.id]}
                    for n in by_kind.get("criterion", [])]
        addressees = [c.name for r in roles if r["role"] == "decision_maker"
                      for c in r["contacts"]]
        opp = data.opportunity
        currency = opp.currency or data.account.last_purchase_currency or "CNY"
        requests: list[dict[str, Any]] = [
            {"request": s["label"], "detail": s["note"],
             "answer": t("proposal.doc.see_part", number=s["part_number"],
                         title=s["part_title"])} for s in signals]
        for c in criteria:
            met = "; ".join(clean(f"{e['feature']} — {e['benefit'] or e['advantage'] or ''}")
                            .rstrip(" —") for e in c["fab"])
            requests.append({"request": c["text"], "detail": None,
                             "answer": t("proposal.doc.criterion_met", how=met) if met else
                             t("proposal.doc.see_part", number=3,
                               title=part_titles["products"])})
        return {
            "lang": lang, "today": today, "version": version, "t": t, "label": label,
            "colon": "：" if lang == "zh" else ":", "sep": "、" if lang == "zh" else ", ",
            "seller": data.seller, "owner": data.owner, "account": data.account, "opp": opp,
            "parts": [{"key": p, "number": i, "title": part_titles[p]}
                      for i, p in enumerate(PARTS, start=1)],
            "part": {p: {"number": i, "title": part_titles[p]}
                     for i, p in enumerate(PARTS, start=1)},
            "goals": by_kind.get("goal", []), "problems": by_kind.get("problem", []),
            "solutions": by_kind.get("solution", []),
            "needed_products": by_kind.get("product", []), "criteria": criteria,
            "needs": data.needs, "spin": spin, "swot": swot, "roles": roles,
            "contacts": data.contacts, "who": who,
            "competitors": [c for c in data.competitors if c.weaknesses],
            "fab": fab, "fab_products": [{"product": p, "entries": e}
                                         for p, e in products.items()],
            "signals": signals, "addressees": addressees,
            "addressee": ", ".join(addressees), "requests": requests,
            "account_facts": self._facts(data.account, lang, t, label),
            "configuration": {p: "; ".join(clean(e["feature"]) for e in entries)
                              for p, entries in products.items()},
            "currency": currency, "amount": opp.amount,
            "valid_until": today + timedelta(days=QUOTE_VALID_DAYS),
            "money": lambda amount, cur=currency: format_money(amount, cur),
            "day": lambda value: format_day(value, lang),
        }

    @staticmethod
    def _facts(account: AccountInfo, lang: str, t: Callable[..., Markup],
               label: Callable[[str, str | None], str]) -> list[dict[str, Any]]:
        """The customer-status facts that were recorded, as (label, value) pairs."""
        facts: list[tuple[str, Any]] = [
            ("industry", label("industry", account.industry)),
            ("nature", label("nature", account.nature)),
            ("size", t("proposal.doc.employees", n=f"{account.size_employees:,}")
             if account.size_employees else None),
            ("departments", ("、" if lang == "zh" else ", ").join(
                label("function", d) for d in account.purchase_departments)),
            ("address", " ".join(clean(x) for x in (account.address, account.postcode) if x)),
            ("website", account.website),
        ]
        last: list[str] = []
        if account.last_purchase_qty is not None:
            last.append(t("proposal.doc.units", n=f"{account.last_purchase_qty:,.0f}"))
        if account.last_purchase_amount is not None:
            last.append(format_money(account.last_purchase_amount,
                                     account.last_purchase_currency))
        if account.last_purchase_satisfaction is not None:
            last.append(t("proposal.doc.satisfaction",
                          score=account.last_purchase_satisfaction))
        # Markup.join keeps the escaped texts as they are (the money string has nothing to escape)
        facts.append(("last_purchase", Markup("，" if lang == "zh" else ", ").join(last)))
        return [{"label": t(f"proposal.doc.fact.{key}"), "value": value}
                for key, value in facts if value]

    def counts(self, data: ProposalData) -> dict[str, int]:
        answered = [s for s in data.spin if s.answer]
        return {
            "goals": sum(1 for n in data.needs if n.kind == "goal"),
            "problems": sum(1 for n in data.needs if n.kind == "problem"),
            "solutions": sum(1 for n in data.needs if n.kind in ("solution", "product")),
            "criteria": sum(1 for n in data.needs if n.kind == "criterion"),
            "situation": sum(1 for s in answered if s.kind == "S"),
            "pain": sum(1 for s in answered if s.kind in ("P", "I")),
            "payoff": sum(1 for s in answered if s.kind == "N"),
            "fab": len(data.fab), "products": len({f.product for f in data.fab}),
            "strengths": sum(1 for s in data.swot if s.quadrant == "s"),
            "trends": sum(1 for s in data.swot if s.quadrant == "o"),
            "internal": sum(1 for s in data.swot if s.quadrant in ("w", "t")),
            "signals": len(data.signals), "contacts": len(data.contacts),
            "roles": sum(1 for c in data.contacts if c.buying_roles),
        }

    def sections(self, data: ProposalData, lang: str,
                 counts: Mapping[str, int]) -> tuple[dict[str, str], ...]:
        """One line per part: what went into it (stored with the proposal, shown in the reply)."""
        opp = data.opportunity
        params: dict[str, Any] = {
            **counts, "owner": data.owner,
            "close": format_day(opp.expected_close, lang) if opp.expected_close else "",
            "amount": format_money(opp.amount, opp.currency or "CNY") if opp.amount else "",
        }
        return tuple({"part": part, "title": self.plain_text(lang, f"proposal.part.{part}"),
                      "text": self.plain_text(lang, f"proposal.summary.{part}", **params)}
                     for part in PARTS)

    def plain_text(self, lang: str, key: str, **params: Any) -> str:
        """A catalog text as plain text (for titles and summaries stored in the database)."""
        return inline_plain(str(self._text(self.docx_env, lang, key, **params)))

    def title(self, data: ProposalData, lang: str) -> str:
        return self.plain_text(lang, "proposal.title", opportunity=data.opportunity.name,
                               account=data.account.name)

    def markdown(self, data: ProposalData, lang: str, today: date, *, version: int = 1) -> str:
        ctx = self.context(data, lang, today, self.markdown_env, version)
        title = self._text(self.markdown_env, lang, "proposal.title",
                           opportunity=data.opportunity.name, account=data.account.name)
        return self._render(self.markdown_template, ctx, title=title)

    def docx_source(self, data: ProposalData, lang: str, today: date, *,
                    version: int = 1) -> str:
        """The .docx template's output: the block source the document is built from."""
        ctx = self.context(data, lang, today, self.docx_env, version)
        title = self._text(self.docx_env, lang, "proposal.title",
                           opportunity=data.opportunity.name, account=data.account.name)
        return self._render(self.docx_template, ctx, title=title)

    def docx(self, data: ProposalData, lang: str, today: date, *, version: int = 1) -> bytes:
        blocks = read_blocks(self.docx_source(data, lang, today, version=version))
        return build_docx(blocks, title=self.title(data, lang), author=data.seller, lang=lang)

    def _render(self, template: Template, ctx: dict[str, Any], **extra: Any) -> str:
        try:
            return template.render(**ctx, **extra).strip() + "\n"
        except TemplateError as exc:
            raise ProposalTemplateError(f"proposal template {template.name}: {exc}") from exc

    def write(self, data: ProposalData, lang: str, today: date, *, version: int = 1) -> Rendered:
        """Both files, the title and the per-part summary."""
        counts = self.counts(data)
        return Rendered(title=self.title(data, lang),
                        markdown=self.markdown(data, lang, today, version=version),
                        docx=self.docx(data, lang, today, version=version),
                        sections=self.sections(data, lang, counts), counts=counts)


_ANSWERS: tuple[tuple[str, str], ...] = (
    ("price", "quotation"), ("discount", "quotation"), ("payment", "quotation"),
    ("deposit", "quotation"), ("terms", "quotation"), ("quote", "quotation"),
    ("delivery", "implementation"), ("time", "implementation"), ("date", "implementation"),
    ("install", "implementation"), ("service", "implementation"), ("sign", "implementation"),
    ("contract", "implementation"), ("people", "implementation"),
    ("reference", "credentials"), ("certif", "credentials"), ("qualif", "credentials"),
    ("sample", "products"), ("trial", "products"), ("spec", "products"), ("size", "products"),
)


def _answering_part(signal: str) -> str:
    """Which part of the proposal answers a customer's question (a buying-signal code)."""
    code = signal.casefold()
    return next((part for word, part in _ANSWERS if word in code), "products")


def inline_plain(text: str) -> str:
    """Block-source text without its inline markup and escapes."""
    return "".join(chunk for chunk, _, _ in inline_runs(text))


def format_money(amount: Decimal | None, currency: str | None) -> str:
    if amount is None:
        return ""
    return f"{amount:,.2f} {currency or ''}".strip()


def format_day(value: date | datetime | None, lang: str) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        value = value.date()
    if lang == "zh":
        return f"{value.year}年{value.month}月{value.day}日"
    return value.isoformat()


def file_stem(name: str, version: int) -> str:
    """A safe file name for an opportunity's proposal (Chinese letters are kept)."""
    text = unicodedata.normalize("NFKC", name).casefold()
    slug = re.sub(r"[^\w]+", "-", text, flags=re.UNICODE).strip("-_")[:60].strip("-_")
    return f"{slug or 'proposal'}-v{version}"


# --- recording ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Generated:
    """A stored proposal version and its files."""

    version: int
    rendered: Rendered
    markdown_name: str
    docx_name: str


def next_version(session: Session, opportunity_id: uuid.UUID) -> int:
    found = session.execute(select(func.max(Proposal.version))
                            .where(Proposal.opportunity_id == opportunity_id)).scalar()
    return int(found or 0) + 1


def generate(session: Session, writer: ProposalWriter, data: ProposalData, *, lang: str,
             today: date, now: datetime, org_id: uuid.UUID, user_id: uuid.UUID) -> Generated:
    """Render the next version of the opportunity's proposal, store it and log it.

    Two generated at once for the same opportunity would collide on (opportunity, version):
    the loser renders again with the next number.
    """
    opp = data.opportunity
    for _attempt in range(3):
        version = next_version(session, data.opportunity_id)
        rendered = writer.write(data, lang, today, version=version)
        stem = file_stem(opp.name, version)
        try:
            with session.begin_nested():
                session.add(Proposal(
                    org_id=org_id, opportunity_id=data.opportunity_id, version=version,
                    title=rendered.title[:255], sections=list(rendered.sections),
                    quote_amount=opp.amount, currency=opp.currency,
                    file_name=f"{stem}.docx", created_at=now, updated_at=now))
        except IntegrityError:
            continue
        break
    else:  # pragma: no cover - lost the race three times in a row
        raise ProposalTemplateError("could not number the proposal; please try again")
    records.log_activity(session, org_id=org_id, user_id=user_id, kind=ActivityKind.PROPOSAL,
                         note=f"v{version}: {rendered.title}", now=now,
                         account_id=str(data.account_id),
                         opportunity_id=str(data.opportunity_id))
    session.execute(update(Opportunity).where(Opportunity.id == data.opportunity_id)
                    .values(last_activity_at=now, updated_at=now))
    return Generated(version, rendered, f"{stem}.md", f"{stem}.docx")
