"""The proposal (建议书): the `proposal` command end to end through the coach, on SQLite and
PostgreSQL, and the document itself opened with python-docx."""

from __future__ import annotations

import io
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from docx import Document
from sqlalchemy import select
from sqlalchemy.orm import Session

from bot import proposal as doc
from bot.app import build_engine
from bot.coach import Coach
from bot.commands import load_commands
from bot.commands.proposal import Candidate, match
from bot.settings import Settings
from dialogs.messages import Inbound, Outbound
from dialogs.render import load_catalogs
from store.db import Database
from store.models import (
    Account,
    Activity,
    BuyingSignal,
    CompetitorNote,
    Contact,
    FabEntry,
    Identity,
    Need,
    Opportunity,
    Proposal,
    SpinEntry,
    SwotEntry,
)
from tests.sql_log import statements_run

NOW = datetime(2026, 11, 27, 9, tzinfo=UTC)
SECRET = "Daughter starts university in Harbin; plays badminton on Thursdays"
NASTY = "<script>alert('x')</script> & Co | *bold* #1"
DOCX_MIME = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
PARTS_EN = ("Current state and future", "Problems and challenges", "Products and services",
            "Implementation plan", "Quotation", "Response letter", "Credentials")
PARTS_ZH = ("现状与未来", "问题与挑战", "产品与服务", "实施计划", "报价书", "应答书", "资信证明")


def make_coach(db: Database, settings: Settings | None = None) -> Coach:
    renderer, engine = build_engine()
    return Coach(db, engine, renderer, clock=lambda: NOW, registry=load_commands(settings))


def typed(text: str, user: str = "lilei") -> Inbound:
    return Inbound(platform="console", org_key="acme", user_key=user, text=text, user_name=user)


async def say(coach: Coach, text: str, user: str = "lilei") -> Outbound:
    reply = await coach.handle(typed(text, user))
    assert len(reply.messages) == 1, reply.messages
    return reply.messages[0]


@dataclass
class Ids:
    org: uuid.UUID
    user: uuid.UUID


async def speaker(db: Database, coach: Coach, user: str = "lilei") -> Ids:
    await coach.handle(typed("lang en", user))

    def find(session: Session) -> Ids:
        row = session.execute(select(Identity.org_id, Identity.user_id)
                              .where(Identity.external_id == user)).one()
        return Ids(row[0], row[1])

    return await db.run(find)


def add_opportunity(session: Session, ids: Ids, *, name: str = "2027 winter down jackets",
                    account: str = "大庆油田 (Daqing Oilfield)", stage: str = "value",
                    contacts: int = 3, spin: int = 4, fab: int = 2, active_days_ago: int = 1,
                    feature: str = "90% duck down, fill power 700") -> uuid.UUID:
    """An opportunity with every kind of record the proposal reads."""
    acc = Account(org_id=ids.org, owner_id=ids.user, name=account, name_key=account.casefold(),
                  industry="oil_gas", nature="state_owned", size_employees=200000,
                  business="Oil and gas production; six drilling companies.",
                  last_purchase_qty=Decimal(18000), last_purchase_amount=Decimal("5400000"),
                  last_purchase_currency="CNY", last_purchase_satisfaction=3,
                  address="黑龙江省大庆市", postcode="163453",
                  purchase_departments=["procurement", "union"])
    session.add(acc)
    session.flush()
    people = []
    for i in range(contacts):
        role = ["decision_maker", "designer", "user"][i % 3]
        person = Contact(org_id=ids.org, account_id=acc.id, owner_id=ids.user,
                         name=f"孙丽 Sun Li {i}", name_key=f"sun li {i}", title="Procurement chief",
                         department="Materials Supply", level="middle", function="procurement",
                         buying_roles=[role], comm_style="owl", insider_level="mid",
                         relationship_stage="trust", phone="+86 459 555 0123",
                         email="sunli@example.com", work_notes="Internal: wants data, not decks",
                         personal_notes=SECRET)
        session.add(person)
        people.append(person)
    session.add(CompetitorNote(org_id=ids.org, account_id=acc.id, competitor="Polar Bear Apparel",
                               product="Padded cotton coats", rep_name="Qiao Feng",
                               rep_style="Entertains procurement", strengths="Lowest price",
                               weaknesses="Fill clumps after washing"))
    opp = Opportunity(org_id=ids.org, account_id=acc.id, owner_id=ids.user, name=name,
                      product="YY-Polar 900 work jacket", stage=stage, phase="evaluation",
                      amount=Decimal("6800000"), currency="CNY",
                      expected_close=date(2027, 1, 6), next_step="Present the FAB sheet",
                      next_step_due=date(2026, 12, 1),
                      last_activity_at=NOW - timedelta(days=active_days_ago))
    session.add(opp)
    session.flush()
    goal = Need(org_id=ids.org, opportunity_id=opp.id, kind="goal",
                text="Keep drilling crews warm at -35 °C", position=0)
    session.add(goal)
    session.flush()
    problem = Need(org_id=ids.org, opportunity_id=opp.id, parent_id=goal.id, kind="problem",
                   text="Jackets lose their loft after two winters", position=0)
    session.add(problem)
    session.flush()
    criterion = Need(org_id=ids.org, opportunity_id=opp.id, parent_id=problem.id,
                     kind="criterion", text="Fill power ≥ 650; oil repellency grade 4+",
                     contact_id=people[0].id if people else None, position=1)
    session.add(criterion)
    session.flush()
    kinds = "SPIN"
    for i in range(spin):
        session.add(SpinEntry(org_id=ids.org, opportunity_id=opp.id, kind=kinds[i % 4],
                              question=f"SPIN question {i} {kinds[i % 4]}?",
                              answer=f"SPIN answer {i} {kinds[i % 4]}",
                              asked_at=NOW - timedelta(days=40 - i % 40)))
    for i in range(fab):
        session.add(FabEntry(org_id=ids.org, opportunity_id=opp.id,
                             product=f"YY-Polar {900 + i % 3}",
                             feature=feature if i == 0 else f"Feature {i}",
                             advantage=f"Advantage {i}", benefit=f"Benefit {i}",
                             need_id=criterion.id if i == 0 else None, position=i))
    for quadrant, text, source in (("s", "Repair rate under 3%", "quality"),
                                   ("w", "Little group-order experience", "service"),
                                   ("o", "Welfare spending rising in state firms", "economic"),
                                   ("t", "Bundled tenders", "economic")):
        session.add(SwotEntry(org_id=ids.org, opportunity_id=opp.id, quadrant=quadrant,
                              text=text, source=source))
    session.add(BuyingSignal(org_id=ids.org, opportunity_id=opp.id, signal="asks_references",
                             note="Which other oil fields wear your jackets?",
                             contact_id=people[0].id if people else None, observed_at=NOW))
    session.flush()
    return opp.id


def docx_text(data: bytes) -> tuple[list[tuple[str, str]], list[list[list[str]]]]:
    """(style, text) of every paragraph, and every table's cell texts."""
    document = Document(io.BytesIO(data))
    paragraphs = [(p.style.name if p.style is not None else "", p.text)
                  for p in document.paragraphs]
    tables = [[[cell.text for cell in row.cells] for row in table.rows]
              for table in document.tables]
    return paragraphs, tables


def everything(data: bytes) -> str:
    paragraphs, tables = docx_text(data)
    return "\n".join([t for _, t in paragraphs] + [c for tb in tables for r in tb for c in r])


async def test_the_docx_opens_and_has_all_seven_parts_with_the_recorded_data(
        db: Database) -> None:
    coach = make_coach(db)
    ids = await speaker(db, coach)
    await db.run(add_opportunity, ids)
    out = await say(coach, "proposal")
    assert out.kind == "say" and out.private  # the documents are for the asker alone
    assert "Proposal v1" in out.text and "2027 winter down jackets" in out.text
    md, docx_file = out.attachments
    assert md.filename == "2027-winter-down-jackets-v1.md" and md.mime == "text/markdown"
    assert docx_file.filename == "2027-winter-down-jackets-v1.docx"
    assert docx_file.mime == DOCX_MIME
    paragraphs, tables = docx_text(docx_file.data)
    headings = [text for style, text in paragraphs if style.startswith("Heading 1")]
    assert headings == [f"{i}. {title}" for i, title in enumerate(PARTS_EN, start=1)]
    assert paragraphs[0] == ("Title",
                             "Proposal: 2027 winter down jackets — 大庆油田 (Daqing Oilfield)")
    text = everything(docx_file.data)
    for recorded in ("Oil and gas production", "Keep drilling crews warm at -35 °C",
                     "Jackets lose their loft after two winters", "SPIN answer 0 S",
                     "SPIN answer 1 P", "SPIN answer 2 I", "SPIN answer 3 N",
                     "Fill clumps after washing", "Welfare spending rising in state firms",
                     "Repair rate under 3%", "Which other oil fields wear your jackets?",
                     "References", "6,800,000.00 CNY", "2027-01-06", "Present the FAB sheet",
                     "Fill power ≥ 650; oil repellency grade 4+", "Oil & gas",
                     "State-owned enterprise"):
        assert recorded in text, recorded
    fab_table = next(t for t in tables if t[0][0] == "Product or service")
    assert fab_table[1] == ["YY-Polar 900", "90% duck down, fill power 700", "Advantage 0",
                            "Benefit 0"]
    team = next(t for t in tables if t[0][0] == "Role")
    assert [row[0] for row in team[1:]] == ["Decision maker", "Designer", "User"]
    quote = next(t for t in tables if t[0][0] == "Item")
    assert quote[-1] == ["Total", "", "", "6,800,000.00 CNY"]
    # the seller (the org) and the project owner
    assert "lilei" in text and "acme" in text

    def stored(session: Session) -> tuple[list[Any], list[Any]]:
        rows = session.execute(select(Proposal.version, Proposal.title, Proposal.sections,
                                      Proposal.quote_amount, Proposal.currency,
                                      Proposal.file_name)).all()
        acts = session.execute(select(Activity.kind, Activity.note)).all()
        return list(rows), list(acts)

    rows, acts = await db.run(stored)
    assert len(rows) == 1
    version, title, sections, amount, currency, file_name = rows[0]
    assert (version, amount, currency, file_name) == (1, Decimal("6800000.00"), "CNY",
                                                      "2027-winter-down-jackets-v1.docx")
    assert title == "Proposal: 2027 winter down jackets — 大庆油田 (Daqing Oilfield)"
    assert [s["part"] for s in sections] == list(doc.PARTS)
    assert sections[2]["text"] == "2 FAB entries for 2 products, 1 need-payoff answer"
    assert [a[0] for a in acts] == ["proposal"]


async def test_personal_notes_and_internal_analysis_never_appear(db: Database) -> None:
    coach = make_coach(db)
    ids = await speaker(db, coach)
    await db.run(add_opportunity, ids)
    out = await say(coach, "proposal")
    md = out.attachments[0].data.decode()
    for forbidden in (SECRET, "badminton", "+86 459", "sunli@example.com", "wants data",
                      "Qiao Feng", "Entertains procurement", "Little group-order experience",
                      "Bundled tenders"):
        assert forbidden not in md
        assert forbidden not in everything(out.attachments[1].data)
        assert forbidden not in out.text
    assert "2 internal SWOT points" in out.text


async def test_user_text_is_escaped_in_markdown_and_literal_in_the_docx(db: Database) -> None:
    coach = make_coach(db)
    ids = await speaker(db, coach)
    await db.run(lambda s: add_opportunity(s, ids, feature=NASTY, name="Jackets & <Co>"))
    out = await say(coach, "proposal jackets")
    md = out.attachments[0].data.decode()
    assert "<script>" not in md and "<Co>" not in md
    assert "&lt;script&gt;alert('x')&lt;/script&gt; &amp; Co \\| \\*bold\\* #1" in md
    assert "# Proposal: Jackets &amp; &lt;Co&gt;" in md
    _, tables = docx_text(out.attachments[1].data)
    fab_table = next(t for t in tables if t[0][0] == "Product or service")
    assert fab_table[1][1] == NASTY  # exactly as typed, in its own cell
    assert "Jackets & <Co>" in everything(out.attachments[1].data)
    assert "<b>Jackets &amp; &lt;Co&gt;</b>" in out.text  # the message's own escaping


async def test_chinese_speaker_gets_chinese_titles_and_chinese_text_round_trips(
        db: Database) -> None:
    coach = make_coach(db)
    ids = await speaker(db, coach)
    await say(coach, "lang zh")
    await db.run(lambda s: add_opportunity(s, ids, name="2027年冬季钻井队羽绒服",
                                           feature="九成白鸭绒，蓬松度700"))
    out = await say(coach, "建议书 冬季")
    assert "建议书第 1 版" in out.text or "第 1 版" in out.text
    md_file, docx_file = out.attachments
    assert docx_file.filename == "2027年冬季钻井队羽绒服-v1.docx"
    paragraphs, _ = docx_text(docx_file.data)
    assert paragraphs[0][1] == "建议书：2027年冬季钻井队羽绒服 — 大庆油田 (Daqing Oilfield)"
    headings = [text for style, text in paragraphs if style.startswith("Heading 1")]
    assert headings == [f"{i}. {title}" for i, title in enumerate(PARTS_ZH, start=1)]
    text = everything(docx_file.data)
    assert "九成白鸭绒，蓬松度700" in text and "黑龙江省大庆市" in text
    assert "石油石化" in text and "2027年1月6日" in text
    md = md_file.data.decode("utf-8")
    assert "## 6. 应答书" in md and "九成白鸭绒，蓬松度700" in md
    assert "**行业：**" in md


async def test_versions_increment_per_opportunity(db: Database) -> None:
    coach = make_coach(db)
    ids = await speaker(db, coach)
    await db.run(add_opportunity, ids)
    await db.run(lambda s: add_opportunity(s, ids, name="Office staff uniforms",
                                           account="Saibei Cement", active_days_ago=30))
    first = await say(coach, "proposal 2027 winter down jackets")
    second = await say(coach, "/proposal 2027 winter")
    other = await say(coach, "proposal office")
    assert first.attachments[1].filename.endswith("-v1.docx")
    assert second.attachments[1].filename.endswith("-v2.docx")
    assert other.attachments[1].filename == "office-staff-uniforms-v1.docx"
    assert "version 2" in everything(second.attachments[1].data)

    def versions(session: Session) -> list[tuple[str, int]]:
        return [(r[0], r[1]) for r in session.execute(
            select(Opportunity.name, Proposal.version)
            .join(Opportunity, Opportunity.id == Proposal.opportunity_id)
            .order_by(Opportunity.name, Proposal.version))]

    assert await db.run(versions) == [("2027 winter down jackets", 1),
                                      ("2027 winter down jackets", 2),
                                      ("Office staff uniforms", 1)]


async def test_no_argument_takes_the_most_recent_open_one_and_lists_the_others(
        db: Database) -> None:
    coach = make_coach(db)
    ids = await speaker(db, coach)
    empty = await say(coach, "proposal")
    assert empty.kind == "error" and "intake" in empty.text
    await db.run(lambda s: add_opportunity(s, ids, name="Old winter order", stage="won",
                                           active_days_ago=0))
    only_closed = await say(coach, "proposal")
    assert only_closed.kind == "error" and "no open opportunity" in only_closed.text
    await db.run(lambda s: add_opportunity(s, ids, name="Bus drivers' jackets",
                                           account="Beijing Bus", active_days_ago=9))
    await db.run(lambda s: add_opportunity(s, ids, name="Bank uniforms", account="Longjiang",
                                           active_days_ago=2))
    out = await say(coach, "proposal")
    assert out.attachments[1].filename == "bank-uniforms-v1.docx"
    assert "<code>proposal Bus drivers&#39; jackets</code> — Beijing Bus" in out.text
    assert "Old winter order" not in out.text  # won: not offered


async def test_several_matches_give_a_pick_list_and_an_unknown_name_an_error(
        db: Database) -> None:
    coach = make_coach(db)
    ids = await speaker(db, coach)
    await db.run(lambda s: add_opportunity(s, ids, name="Winter jackets", account="Daqing"))
    await db.run(lambda s: add_opportunity(s, ids, name="Winter jackets", account="Beijing Bus"))
    await db.run(lambda s: add_opportunity(s, ids, name="Office uniforms", account="Daqing"))
    pick = await say(coach, "proposal winter")
    assert pick.kind == "error" and not pick.attachments
    assert "More than one opportunity matches “winter”" in pick.text
    assert "<code>proposal Daqing Winter jackets</code>" in pick.text
    assert "<code>proposal Beijing Bus Winter jackets</code>" in pick.text
    chosen = await say(coach, "proposal Beijing Bus Winter jackets")
    assert chosen.attachments and "Beijing Bus" in chosen.text
    fuzzy = await say(coach, "proposal ofice uniforms")
    assert fuzzy.attachments[1].filename == "office-uniforms-v1.docx"
    unknown = await say(coach, "proposal <Submarines>")
    assert unknown.kind == "error" and not unknown.attachments
    assert "no opportunity called “&lt;Submarines&gt;”" in unknown.text
    await say(coach, "lang zh")
    zh = await say(coach, "proposal 潜水艇")
    assert zh.kind == "error" and "没有找到名为“潜水艇”的商机" in zh.text

    def count(session: Session) -> int:
        return len(session.execute(select(Proposal.id)).all())

    assert await db.run(count) == 2


async def test_gathering_takes_the_same_few_queries_whatever_the_row_counts(
        db: Database) -> None:
    coach = make_coach(db)
    ids = await speaker(db, coach)
    small = await db.run(lambda s: add_opportunity(s, ids, contacts=1, spin=1, fab=1))
    big = await db.run(lambda s: add_opportunity(s, ids, name="Big", account="Big account",
                                                 contacts=20, spin=50, fab=10))

    def queries(session: Session, opp_id: uuid.UUID) -> tuple[int, doc.ProposalData | None]:
        with statements_run(session) as seen:
            data = doc.gather(session, ids.org, opp_id)
        return len(seen), data

    n_small, _ = await db.run(queries, small)
    n_big, data = await db.run(queries, big)
    assert n_small == n_big == 8
    assert data is not None
    assert (len(data.contacts), len(data.spin), len(data.fab)) == (20, 50, 10)


async def test_a_company_template_replaces_a_part(db: Database, tmp_path: Path) -> None:
    (tmp_path / "proposal_md.j2").write_text(
        '{% extends "default/proposal_md.j2" %}\n'
        "{% block credentials %}\n## 7. Our credentials\n\n"
        "ISO 9001 since 2009; {{ seller }} & partners.\n{% endblock %}\n", encoding="utf-8")
    settings = Settings(SALESCOACH_TEMPLATES_DIR=str(tmp_path))
    coach = make_coach(db, settings)
    ids = await speaker(db, coach)
    await db.run(add_opportunity, ids)
    out = await say(coach, "proposal")
    md = out.attachments[0].data.decode()
    assert "ISO 9001 since 2009; acme & partners." in md
    assert "## 1. Current state and future" in md
    assert "Certificates, licences" not in md
    assert "ISO 9001 since 2009; acme & partners." in everything(out.attachments[1].data)


def test_a_broken_company_template_fails_at_start_up(tmp_path: Path) -> None:
    (tmp_path / "proposal_md.j2").write_text("{% if %}", encoding="utf-8")
    with pytest.raises(doc.ProposalTemplateError, match=r"proposal_md\.j2"):
        doc.ProposalWriter(load_catalogs(), tmp_path)
    with pytest.raises(ValueError, match="SALESCOACH_TEMPLATES_DIR"):
        Settings(SALESCOACH_TEMPLATES_DIR=str(tmp_path / "missing"))


def test_values_cannot_start_blocks_in_the_docx_source() -> None:
    source = "\n".join([f"- {doc.plain_escape('# not a heading')}",
                        f"{doc.plain_escape('- not a bullet')}",
                        f"| {doc.plain_escape('a | b')} | {doc.plain_escape('**x**')} |",
                        f"{doc.plain_escape('1. not numbered')}"])
    blocks = doc.read_blocks(source)
    assert [(b.kind, doc.inline_plain(b.text)) for b in blocks if b.kind != "table"] == [
        ("bullet", "# not a heading"), ("paragraph", "- not a bullet"),
        ("paragraph", "1. not numbered")]
    table = next(b for b in blocks if b.kind == "table")
    assert [doc.inline_plain(c) for c in table.rows[0]] == ["a | b", "**x**"]


def test_matching_prefers_exact_then_open_ones() -> None:
    def cand(name: str, account: str = "A", stage: str = "value") -> Candidate:
        return Candidate(uuid.uuid4(), name, account, stage, uuid.uuid4(), None)

    exact, longer = cand("Winter jackets"), cand("Winter jackets 2028")
    assert match("winter jackets", [longer, exact]) == [exact]
    won, open_one = cand("Vests", "B", "won"), cand("Vests", "C")
    assert match("vests", [won, open_one]) == [open_one]
    assert match("ВЕСТ", [won]) == []
    assert match("wintre jackets", [exact]) == [exact]


async def test_a_bare_opportunity_still_gets_seven_parts_and_says_what_is_missing(
        db: Database) -> None:
    coach = make_coach(db)
    ids = await speaker(db, coach)

    def bare(session: Session) -> None:
        acc = Account(org_id=ids.org, owner_id=ids.user, name="Saibei Cement", name_key="x")
        session.add(acc)
        session.flush()
        session.add(Opportunity(org_id=ids.org, account_id=acc.id, owner_id=ids.user,
                                name="Kiln crew jackets", stage="needs"))

    await db.run(bare)
    out = await say(coach, "proposal kiln")
    paragraphs, tables = docx_text(out.attachments[1].data)
    assert len([t for s, t in paragraphs if s == "Heading 1"]) == 7
    text = everything(out.attachments[1].data)
    assert "[To be completed: features, advantages and benefits" in text
    assert next(t for t in tables if t[0][0] == "Item")[-1] == ["Total", "", "", "to be agreed"]
    for hint in ("needs", "fab", "amount", "signals"):
        assert hint in out.text
    await say(coach, "lang zh")
    zh = await say(coach, "proposal kiln")
    assert "用 <b>fab</b> 添加 FAB 条目" in zh.text
    assert "【待补充：" in everything(zh.attachments[1].data)
