"""Fuzzy look-ups of accounts, opportunities and contacts by name: typos, case, full-width
characters, Chinese names by substring (`中石化` in `中石化北京石油分公司`) or by abbreviation
(`中石化` for `中国石油化工`, the characters in order).

Two stages. The database finds at most `_CANDIDATES` candidates, cheapest question first:
1. names containing the query (`LIKE '%q%'`) — on PostgreSQL from the pg_trgm GIN index;
2. for a Chinese query that found fewer names than the caller shows, the names holding its
   characters in order (an abbreviation);
3. only when nothing contains the query, the names like it despite typos — on PostgreSQL pg_trgm
   word similarity (`q <% name`, threshold set for the transaction) from the GIN index, nearest
   first; on SQLite by counting the query's trigrams found in each name of the org.
Python then ranks the few candidates with one scoring function, the same on both backends, so
both answer alike. Migration 0002 creates the GIN indexes.

Every search is limited to what the viewer may see (store/permissions.py).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from difflib import SequenceMatcher
from typing import Any

from sqlalchemy import ColumnElement, Select, String, Text, case, cast, func, literal, select
from sqlalchemy.orm import QueryableAttribute, Session

from store.enums import Role
from store.models import Account, Contact, Opportunity, name_key
from store.permissions import Access, Viewer

_CANDIDATES = 20
# below this a candidate is not shown at all
MIN_SCORE = 0.6
# pg_trgm word similarity needed to be a candidate, tried in turn until one finds names. High
# first: on 100,000 names a typo in part of a name is at 0.7 nine times in ten, and a low
# threshold lets in thousands of names sharing one word, each re-checked and sorted (0.5 made
# the median look-up 5x slower than 0.7).
_PG_THRESHOLDS = (0.7, 0.6, 0.5, 0.3)
_SHORT_ID = re.compile(r"#([0-9a-f]{6,32})", re.IGNORECASE)
Rows = Select[*tuple[Any, ...]]
Key = ColumnElement[str] | QueryableAttribute[str]
IdColumn = ColumnElement[uuid.UUID] | QueryableAttribute[uuid.UUID]
_TOKEN = re.compile(r"[\w]+", re.UNICODE)


def _is_cjk(ch: str) -> bool:
    return "\u3400" <= ch <= "\u9fff" or "\uf900" <= ch <= "\ufaff"


@dataclass(frozen=True)
class Match:
    """One found record, best first. `context` is the account of an opportunity or contact."""

    kind: str
    id: uuid.UUID
    name: str
    owner_id: uuid.UUID
    score: float
    exact: bool = False
    context: str | None = None

    @property
    def short_id(self) -> str:
        return self.id.hex[:8]


def score(query: str, key: str) -> float:
    """How well the normalised `query` matches the normalised name `key`, 0..1."""
    if not query or not key:
        return 0.0
    if query == key:
        return 1.0
    if query in key:
        return 0.9 + 0.09 * len(query) / len(key)
    best = SequenceMatcher(None, query, key, autojunk=False).ratio()
    q_tokens = _TOKEN.findall(query)
    k_tokens = _TOKEN.findall(key)
    n = len(q_tokens)
    if n and len(k_tokens) > n:
        q_joined = " ".join(q_tokens)
        for i in range(len(k_tokens) - n + 1):
            window = " ".join(k_tokens[i:i + n])
            best = max(best, 0.88 * SequenceMatcher(None, q_joined, window,
                                                     autojunk=False).ratio())
    if all(_is_cjk(c) for c in query) and _subsequence(query, key):
        best = max(best, 0.75)
    return best


def _subsequence(query: str, key: str) -> bool:
    it = iter(key)
    return all(ch in it for ch in query)


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _grams(query: str, limit: int = 12) -> list[str]:
    """The pieces the SQLite fallback looks for: trigrams of each word, Chinese bigrams."""
    grams: list[str] = []
    for token in _TOKEN.findall(query):
        if all(_is_cjk(c) for c in token):
            pieces = [token[i:i + 2] for i in range(len(token) - 1)] or [token]
        elif len(token) < 3:
            pieces = [token]
        else:
            pieces = [token[i:i + 3] for i in range(len(token) - 2)]
        for piece in pieces:
            if piece not in grams:
                grams.append(piece)
    if len(grams) > limit:  # spread over the whole query rather than its first words
        step = len(grams) / limit
        grams = [grams[int(i * step)] for i in range(limit)]
    return grams


def _candidates(session: Session, base: Rows, key: Key, query: str, *, folded: bool,
                want: int) -> list[Any]:
    """Rows of `base` whose `key` may match the normalised `query`; the rows carry `.key`.
    `folded`: the column holds name_key() values (else names as typed: compared ignoring
    case); `want`: how many the caller shows (fewer substrings → look for abbreviations)."""
    postgres = session.get_bind().dialect.name == "postgresql"
    # SQLite's LIKE ignores ASCII case already; ILIKE keeps PostgreSQL on the trigram index
    like = key.ilike if postgres and not folded else key.like
    pattern = f"%{_like_escape(query)}%"
    # shortest first: the exact name, then the names it is most of, score highest
    shortest = (func.length(key), key)
    rows = list(session.execute(base.where(like(pattern, escape="\\")).order_by(*shortest)
                                .limit(_CANDIDATES)))
    if any(_is_cjk(c) for c in query) and len(query) <= 12 and len(rows) < want:
        # a Chinese abbreviation (中石化 for 中国石油化工): the characters in order
        subseq = "%" + "%".join(_like_escape(c) for c in query if not c.isspace()) + "%"
        rows += session.execute(base.where(like(subseq, escape="\\"))
                                .limit(_CANDIDATES)).all()
    if rows:
        return rows
    if postgres:
        return _pg_similar(session, base, key, query)
    return _sqlite_similar(session, base, key, query)


def _pg_similar(session: Session, base: Rows, key: Key, query: str) -> list[Any]:
    """The names most like `query` by pg_trgm word similarity, read from the GIN index."""
    q = literal(query, Text)
    nearest = base.where(q.op("<%")(key)).order_by(key.op("<->>")(q)).limit(_CANDIDATES)
    for threshold in _PG_THRESHOLDS:
        # for this transaction only: the look-up's unit of work
        session.execute(select(func.set_config("pg_trgm.word_similarity_threshold",
                                               str(threshold), True)))
        rows = list(session.execute(nearest))
        if rows:
            return rows
    return []


def _sqlite_similar(session: Session, base: Rows, key: Key, query: str) -> list[Any]:
    """SQLite has no trigram index: the names sharing most of the query's pieces."""
    hits: list[ColumnElement[int]] = [case((func.instr(key, g) > 0, 1), else_=0)
                                      for g in _grams(query)]
    if not hits:  # punctuation only: nothing to look for
        return []
    total: ColumnElement[int] = hits[0]
    for hit in hits[1:]:
        total = total + hit
    need = max(1, int(0.34 * len(hits)))
    stmt = base.where(total >= need).order_by(total.desc()).limit(_CANDIDATES)
    return list(session.execute(stmt))


def _ranked(kind: str, rows: Iterable[Any], rate: Callable[[Any], tuple[float, bool]]
            ) -> dict[uuid.UUID, Match]:
    """Matches for the rows `rate` scores at least MIN_SCORE, by id (a row seen twice once)."""
    out: dict[uuid.UUID, Match] = {}
    for row in rows:
        if row.id in out:
            continue
        s, exact = rate(row)
        if s >= MIN_SCORE:
            out[row.id] = Match(kind=kind, id=row.id, name=row.name, owner_id=row.owner_id,
                                score=s, exact=exact, context=getattr(row, "context", None))
    return out


def _best(matches: Iterable[Match], limit: int) -> list[Match]:
    return sorted(matches, key=lambda m: (-m.score, m.name))[:limit]


def _by_short_id(session: Session, base: Rows, id_column: IdColumn,
                 query: str) -> list[Any] | None:
    found = _SHORT_ID.fullmatch(query.strip())
    if found is None:
        return None
    prefix = found.group(1).lower()
    if session.get_bind().dialect.name == "postgresql":
        # uuid text has dashes: 8-4-4-4-12
        text_id: ColumnElement[str] = func.replace(cast(id_column, String), "-", "")
    else:
        text_id = cast(id_column, String)
    return list(session.execute(base.where(text_id.like(f"{prefix}%")).limit(_CANDIDATES)))


def _search(session: Session, kind: str, base: Rows, id_column: IdColumn, key: Key,
            query: str, *, folded: bool, limit: int) -> dict[uuid.UUID, Match]:
    """The one search behind every kind: by `#short-id`, else by name."""
    short = _by_short_id(session, base, id_column, query)
    if short is not None:
        return _ranked(kind, short, lambda _row: (1.0, True))
    q = name_key(query)
    if not q:
        return {}
    rows = _candidates(session, base, key, q, folded=folded, want=limit)

    def rate(row: Any) -> tuple[float, bool]:
        k = row.key if folded else name_key(row.key)
        return score(q, k), q == k

    return _ranked(kind, rows, rate)


def search_accounts(session: Session, viewer: Viewer, query: str, *,
                    limit: int = 5, access: Access = Access.READ) -> list[Match]:
    """Accounts the viewer may see whose name matches `query`, best first."""
    base = select(Account.id, Account.name, Account.owner_id, Account.name_key.label("key")
                  ).where(Account.org_id == viewer.org_id,
                          viewer.owner_clause(Account.owner_id, access))
    found = _search(session, "account", base, Account.id, Account.name_key, query,
                    folded=True, limit=limit)
    return _best(found.values(), limit)


def search_contacts(session: Session, viewer: Viewer, query: str, *,
                    limit: int = 5, access: Access = Access.READ) -> list[Match]:
    base = (select(Contact.id, Contact.name, Contact.owner_id, Account.name.label("context"),
                   Contact.name_key.label("key"))
            .join(Account, Account.id == Contact.account_id)
            .where(Contact.org_id == viewer.org_id,
                   viewer.owner_clause(Contact.owner_id, access)))
    found = _search(session, "contact", base, Contact.id, Contact.name_key, query,
                    folded=True, limit=limit)
    return _best(found.values(), limit)


def search_opportunities(session: Session, viewer: Viewer, query: str, *,
                         limit: int = 5, access: Access = Access.READ) -> list[Match]:
    """Opportunities matching by their own name, or by their account's name."""
    base = (select(Opportunity.id, Opportunity.name, Opportunity.owner_id,
                   Account.name.label("context"), Opportunity.name.label("key"))
            .join(Account, Account.id == Opportunity.account_id)
            .where(Opportunity.org_id == viewer.org_id,
                   viewer.owner_clause(Opportunity.owner_id, access)))
    found = _search(session, "opportunity", base, Opportunity.id, Opportunity.name, query,
                    folded=False, limit=limit)
    if _SHORT_ID.fullmatch(query.strip()):
        return _best(found.values(), limit)
    # by account: `opp daqing` finds the Daqing opportunities (the account itself may be
    # someone else's; `base` still limits the opportunities to the viewer's)
    accounts = search_accounts(session, Viewer(viewer.org_id, viewer.user_id, Role.ADMIN,
                                               viewer.team), query, limit=3)
    if accounts:
        account_score = {a.name: a.score for a in accounts}
        by_account = _ranked("opportunity", session.execute(
            base.where(Opportunity.account_id.in_([a.id for a in accounts]))
            .limit(_CANDIDATES)), lambda row: (0.97 * account_score.get(row.context, 0.0), False))
        for match in by_account.values():
            if match.id not in found or found[match.id].score < match.score:
                found[match.id] = match
    return _best(found.values(), limit)


def decide(matches: list[Match]) -> Match | None:
    """The one match meant, or None when the user should pick (or nothing matched)."""
    if not matches:
        return None
    top = matches[0]
    if len(matches) == 1:
        return top
    second = matches[1]
    if top.exact and not second.exact:
        return top
    if top.score >= 0.9 and second.score < 0.8:
        return top
    if top.score >= 0.7 and top.score - second.score >= 0.15:
        return top
    if top.score - second.score >= 0.25:
        return top
    return None


def named_like(session: Session, viewer: Viewer, kind: str, query: str, *,
               access: Access = Access.READ,
               limit: int = _CANDIDATES) -> list[tuple[str, str]]:
    """(id, name) of the accounts, or opportunities, the viewer may `access` named like
    `query`: what a dialog's "which customer?" can mean when the org has too many names to
    list. An opportunity comes under its own name and under its customer's."""
    if kind == "account":
        return [(str(m.id), m.name)
                for m in search_accounts(session, viewer, query, limit=limit, access=access)]
    found = search_opportunities(session, viewer, query, limit=limit, access=access)
    return ([(str(m.id), m.name) for m in found]
            + [(str(m.id), m.context) for m in found if m.context])

