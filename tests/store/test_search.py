"""Fuzzy look-ups: typos, case, full width, Chinese by substring and abbreviation, by id."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from store.db import Database
from store.models import Account, name_key
from store.permissions import viewer
from store.search import (
    decide,
    score,
    search_accounts,
    search_contacts,
    search_opportunities,
)
from tests.sql_log import statements_run
from tests.store.lookups_data import NOW, ORG, build, uid


def _names(session: Session, who: str, query: str, kind: str = "account") -> list[str]:
    v = viewer(session, ORG, uid("user", who), "admin" if who == "admin" else "rep")
    if who.startswith("manager") or who == "director":
        v = viewer(session, ORG, uid("user", who), "manager")
    fn = {"account": search_accounts, "opp": search_opportunities,
          "contact": search_contacts}[kind]
    return [m.name for m in fn(session, v, query)]


def _decided(session: Session, query: str, kind: str = "account") -> str | None:
    v = viewer(session, ORG, uid("user", "admin"), "admin")
    fn = {"account": search_accounts, "opp": search_opportunities,
          "contact": search_contacts}[kind]
    found = decide(fn(session, v, query))
    return found.name if found else None


SINOPEC = "中石化北京石油分公司 (Sinopec Beijing)"


@pytest.mark.parametrize("query", [
    "中石化", "sinopec", "Sinopec", "SINOPEC BEIJING", "sinopek", "sinpoec", "Sinopec Bejing",
    "ｓｉｎｏｐｅｃ", "北京石油", "  sinopec  ",
])
async def test_sinopec_is_found_in_chinese_english_with_typos(db: Database, query: str) -> None:
    await db.run(build)
    assert await db.run(_decided, query) == SINOPEC


async def test_chinese_abbreviation_finds_the_full_name_by_its_characters(db: Database) -> None:
    await db.run(build)
    names = await db.run(_names, "admin", "中石化")
    assert names[0] == SINOPEC  # the substring match ranks first
    assert "中国石油化工集团 (China Petrochemical Group)" in names  # 中…石…化 in order
    assert await db.run(_decided, "中国石化") == "中国石油化工集团 (China Petrochemical Group)"


async def test_typos_in_two_words_and_latin_and_chinese(db: Database) -> None:
    await db.run(build)
    assert await db.run(_decided, "daqnig oilfeld") == "大庆油田 (Daqing Oilfield)"
    assert await db.run(_decided, "大庆") == "大庆油田 (Daqing Oilfield)"
    assert await db.run(_decided, "harbin electrik") == "Harbin Electric Machinery"


async def test_several_close_matches_are_left_to_the_user(db: Database) -> None:
    await db.run(build)
    names = await db.run(_names, "admin", "bus")
    assert set(names) >= {"Beijing Bus Group", "Shanghai Bus Company"}
    assert await db.run(_decided, "bus") is None
    assert await db.run(_decided, "beijing bus group") == "Beijing Bus Group"


async def test_nothing_close_finds_nothing_and_wildcards_are_literal(db: Database) -> None:
    await db.run(build)
    assert await db.run(_names, "admin", "zzzz qqqq") == []
    assert await db.run(_names, "admin", "%") == []
    assert await db.run(_names, "admin", "_") == []


async def test_search_by_short_id(db: Database) -> None:
    await db.run(build)
    short = uid("account", "daqing").hex[:8]
    assert await db.run(_decided, f"#{short}") == "大庆油田 (Daqing Oilfield)"
    assert await db.run(_names, "rep1", f"#{short}") == []  # not theirs


async def test_opportunities_by_own_name_or_account_name(db: Database) -> None:
    await db.run(build)
    assert await db.run(_decided, "winter jackets", "opp") == "Winter jackets 2027"
    assert await db.run(_decided, "wintr jacket", "opp") == "Winter jackets 2027"
    assert await db.run(_decided, "daqing", "opp") == "Drilling crew parkas"
    assert await db.run(_decided, "中石化", "opp") == "Winter jackets 2027"


async def test_contacts_by_chinese_or_pinyin_name(db: Database) -> None:
    await db.run(build)
    assert await db.run(_decided, "王海", "contact") == "王海 (Wang Hai)"
    assert await db.run(_decided, "wang hai", "contact") == "王海 (Wang Hai)"
    assert await db.run(_decided, "zhao yon", "contact") == "赵云 (Zhao Yun)"


async def test_search_sees_only_what_the_viewer_may_see(db: Database) -> None:
    await db.run(build)
    assert await db.run(_names, "rep1", "daqing") == []
    assert await db.run(_names, "rep2", "daqing") == ["大庆油田 (Daqing Oilfield)"]
    assert await db.run(_names, "manager", "daqing") == ["大庆油田 (Daqing Oilfield)"]
    assert await db.run(_names, "director", "daqing") == ["大庆油田 (Daqing Oilfield)"]
    assert await db.run(_names, "manager2", "daqing") == []
    assert await db.run(_names, "rep1", "drilling", "opp") == []


def test_score_prefers_exact_then_substring_then_close() -> None:
    assert score("sinopec", "sinopec") == 1.0
    assert 0.9 <= score("sinopec", "sinopec beijing") < 1.0
    assert 0.5 < score("sinopek", "sinopec beijing") < 0.9
    assert score("中石化", "中国石油化工") >= 0.75
    assert score("zzz", "sinopec") < 0.5


def _statements(session: Session, query: str) -> tuple[list[str], list[str]]:
    """The names found for `query` by an admin and the SQL statements the search ran."""
    with statements_run(session) as statements:
        names = _names(session, "admin", query)
    return names, [s for s in statements if "FROM users" not in s]  # the viewer's team


async def test_a_substring_costs_one_query_and_typos_only_a_few(db: Database) -> None:
    await db.run(build)
    names, statements = await db.run(_statements, "bus")
    assert set(names) == {"Beijing Bus Group", "Shanghai Bus Company"}
    assert len(statements) == 1  # found by LIKE: no similarity search
    names, statements = await db.run(_statements, "sinopek")
    assert names[0] == SINOPEC
    # LIKE, then the similarity search (on PostgreSQL after setting its threshold)
    assert len(statements) <= 3
    # a Chinese name found by substring: the abbreviations are looked for only when fewer
    # names than the pick list holds contain it
    names, statements = await db.run(_statements, "中石化")
    assert len(statements) == 2 and names[0] == SINOPEC


async def test_the_similarity_threshold_lasts_one_transaction(db: Database) -> None:
    if db.is_sqlite:
        pytest.skip("pg_trgm is PostgreSQL's")
    await db.run(build)
    assert await db.run(_names, "admin", "sinopek") == [SINOPEC]

    def threshold(session: Session) -> str:
        return str(session.execute(text("SHOW pg_trgm.word_similarity_threshold")).scalar())

    assert await db.run(threshold) == "0.6"  # the server's default again


async def test_the_exact_name_is_found_among_many_that_contain_it(db: Database) -> None:
    await db.run(build)

    def port(session: Session) -> None:
        # more names containing it than the search reads as candidates, each sorted and
        # stored before the exact one
        names = [f"Airport {n:02d} Tianjin Port" for n in range(30)] + ["Tianjin Port"]
        for n, name in enumerate(names):
            session.add(Account(id=uid("account", f"port{n}"), org_id=ORG,
                                owner_id=uid("user", "rep3"), name=name, name_key=name_key(name),
                                created_at=NOW, updated_at=NOW))
            session.flush()

    await db.run(port)
    assert await db.run(_decided, "tianjin port") == "Tianjin Port"
    assert await db.run(_decided, "Airport 07 Tianjin Port") == "Airport 07 Tianjin Port"
