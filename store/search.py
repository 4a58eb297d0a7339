"""Fuzzy look-ups of accounts, opportunities and contacts by name: typos, case, full-width
characters, Chinese names by substring (`中石化` in `中石化北京石油分公司`) or by abbreviation
(`中石化` for `中国石油化工`, the characters in order).

Two stages. The database finds at most `_CANDIDATES` candidates — on PostgreSQL the nearest names by
pg_trgm word similarity, read in order from a GiST trigram index (`ORDER BY name <->> query`;
migration 0002 creates the indexes), on SQLite by counting the query's trigrams found in each
name of the org, read from the (org_id, name_key) index. Python then ranks the few
candidates with one scoring function, the same on both backends, so both answer alike.

Every search is limited to what the viewer may see (store/permissions.py).
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from difflib import SequenceMatcher
from typing import Any

from sqlalchemy import ColumnElement, Select, String, Text, case, cast, func, literal, select
from sqlalchemy.orm import QueryableAttribute, Session

from store.models import Account, Contact, Opportunity, name_key
from store.permissions import Viewer

_CANDIDATES = 20
# below this a candidate is not shown at all
MIN_SCORE = 0.6
_SHORT_ID = re.compile(r"#([0-9a-f]{6,32})", re.IGNORECASE)
Rows = Select[*tuple[Any, ...]]
Key = ColumnElement[str] | QueryableAttribute[str]
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


def _fold(text: str) -> str:
    return name_key(text)


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


def _candidates(session: Session, base: Rows, key: Key, query: str) -> list[Any]:
    """Rows of `base` whose `key` may match `query`; the query's last column is the key."""
    pattern = f"%{_like_escape(query)}%"
    cjk = any(_is_cjk(c) for c in query)
    subseq = "%" + "%".join(_like_escape(c) for c in query if not c.isspace()) + "%"
    if session.get_bind().dialect.name == "postgresql":
        # the nearest names by word similarity, read in order from the GiST trigram index
        # (a substring has word similarity 1, so substrings come first)
        nearest = base.order_by(key.op("<->>")(literal(query, Text))).limit(_CANDIDATES)
        rows = list(session.execute(nearest))
        if cjk and len(query) <= 12 and not any(query in _fold(r.key) for r in rows):
            # a Chinese abbreviation (中石化 for 中国石油化工): the characters in order
            rows += session.execute(base.where(key.like(subseq, escape="\\"))
                                    .limit(_CANDIDATES)).all()
        return rows
    # SQLite: no trigram index. A substring is found with one LIKE over the (org_id, name_key)
    # index; only without one are the query's pieces counted in each name of the org.
    rows = list(session.execute(base.where(key.like(pattern, escape="\\"))
                                .limit(_CANDIDATES)))
    if rows:
        if cjk and len(query) <= 12:  # and the names it abbreviates
            rows += session.execute(base.where(key.like(subseq, escape="\\"))
                                    .limit(_CANDIDATES)).all()
        return rows
    hits: list[ColumnElement[int]] = [case((func.instr(key, g) > 0, 1), else_=0)
                                      for g in _grams(query)]
    hits.append(case((key.like(pattern, escape="\\"), 100), else_=0))
    if cjk and len(query) <= 12:
        hits.append(case((key.like(subseq, escape="\\"), 50), else_=0))
    total: ColumnElement[int] = hits[0]
    for hit in hits[1:]:
        total = total + hit
    need = max(1, int(0.34 * (len(hits) - (2 if cjk else 1))))
    stmt = base.where(total >= need).order_by(total.desc()).limit(_CANDIDATES)
    return list(session.execute(stmt))


def _rank(kind: str, rows: list[Any], query: str, fold: bool) -> list[Match]:
    out: list[Match] = []
    seen: set[uuid.UUID] = set()
    for row in rows:
        if row.id in seen:
            continue
        seen.add(row.id)
        key = name_key(row.key) if fold else row.key
        s = score(query, key)
        if s >= MIN_SCORE:
            out.append(Match(kind=kind, id=row.id, name=row.name, owner_id=row.owner_id,
                             score=s, exact=query == key,
                             context=getattr(row, "context", None)))
    out.sort(key=lambda m: (-m.score, m.name))
    return out


def _by_short_id(session: Session, base: Rows,
                 id_column: ColumnElement[uuid.UUID] | QueryableAttribute[uuid.UUID],
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


def search_accounts(session: Session, viewer: Viewer, query: str,
                    *, limit: int = 5) -> list[Match]:
    """Accounts the viewer may see whose name matches `query`, best first."""
    base = select(Account.id, Account.name, Account.owner_id, Account.name_key.label("key")
                  ).where(Account.org_id == viewer.org_id, viewer.owner_clause(Account.owner_id))
    short = _by_short_id(session, base, Account.id, query)
    if short is not None:
        return [Match("account", r.id, r.name, r.owner_id, 1.0, True) for r in short][:limit]
    q = name_key(query)
    if not q:
        return []
    rows = _candidates(session, base, Account.name_key, q)
    return _rank("account", rows, q, fold=False)[:limit]


def search_contacts(session: Session, viewer: Viewer, query: str,
                    *, limit: int = 5) -> list[Match]:
    base = (select(Contact.id, Contact.name, Contact.owner_id, Account.name.label("context"),
                   Contact.name_key.label("key"))
            .join(Account, Account.id == Contact.account_id)
            .where(Contact.org_id == viewer.org_id, viewer.owner_clause(Contact.owner_id)))
    short = _by_short_id(session, base, Contact.id, query)
    if short is not None:
        return [Match("contact", r.id, r.name, r.owner_id, 1.0, True, r.context)
                for r in short][:limit]
    q = name_key(query)
    if not q:
        return []
    rows = _candidates(session, base, Contact.name_key, q)
    return _rank("contact", rows, q, fold=False)[:limit]


def search_opportunities(session: Session, viewer: Viewer, query: str,
                         *, limit: int = 5) -> list[Match]:
    """Opportunities matching by their own name, or by their account's name."""
    base = (select(Opportunity.id, Opportunity.name, Opportunity.owner_id,
                   Account.name.label("context"), Opportunity.name.label("key"))
            .join(Account, Account.id == Opportunity.account_id)
            .where(Opportunity.org_id == viewer.org_id,
                   viewer.owner_clause(Opportunity.owner_id)))
    short = _by_short_id(session, base, Opportunity.id, query)
    if short is not None:
        return [Match("opportunity", r.id, r.name, r.owner_id, 1.0, True, r.context)
                for r in short][:limit]
    q = name_key(query)
    if not q:
        return []
    rows = _candidates(session, base, Opportunity.name, q)
    found = {m.id: m for m in _rank("opportunity", rows, q, fold=True)}
    # by account: `opp daqing` finds the Daqing opportunities
    accounts = search_accounts(session, Viewer(viewer.org_id, viewer.user_id, "admin",
                                               viewer.team), query, limit=3)
    if accounts:
        by_account = session.execute(
            base.where(Opportunity.account_id.in_([a.id for a in accounts])).limit(_CANDIDATES)
        ).all()
        account_score = {a.name: a.score for a in accounts}
        for row in by_account:
            s = 0.97 * account_score.get(row.context, 0.0)
            if s >= MIN_SCORE and (row.id not in found or found[row.id].score < s):
                found[row.id] = Match("opportunity", row.id, row.name, row.owner_id, s, False,
                                      row.context)
    return sorted(found.values(), key=lambda m: (-m.score, m.name))[:limit]


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

