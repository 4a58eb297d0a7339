"""`proposal [name]`: generate the seven-part proposal (建议书) as a .md and a .docx file.

With no name: the speaker's most recently active open opportunity (the others are listed as
`proposal <name>` lines). A name may be partial, fuzzy, or the customer's name; when several
opportunities fit equally, the reply lists them instead of guessing. Each generation stores a new
proposal version and an activity.
"""

from __future__ import annotations

import html
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from difflib import SequenceMatcher

from markupsafe import Markup
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bot import proposal as doc
from bot.commands import CommandRequest, Handler, Registry
from dialogs.messages import Attachment, Outbound
from dialogs.render import load_catalogs
from store.enums import OPEN_STAGES
from store.models import Account, Opportunity, name_key


def _markup(req: CommandRequest, key: str, **params: object) -> Markup:
    """A catalog text as markup, to pass into a message template without escaping it again."""
    return req.renderer.text(req.ctx.lang, key, **params)


PICK_LIMIT = 6  # lines in a pick list
FUZZY_RATIO = 0.7  # how alike a misspelt name must be
CLEAR_LEAD = 0.1  # a fuzzy match wins alone only this far ahead of the next


@dataclass(frozen=True)
class Candidate:
    id: uuid.UUID
    name: str
    account: str
    stage: str
    owner_id: uuid.UUID
    active_at: datetime | None

    @property
    def open(self) -> bool:
        return self.stage in OPEN_STAGES


def candidates(session: Session, org_id: uuid.UUID, *, owner_id: uuid.UUID,
               open_only: bool = False, limit: int = 5000) -> list[Candidate]:
    """One owner's opportunities (or their open ones), most recently active first: a
    proposal is written only for one's own deal (store/permissions.py, `Access.CHANGE`)."""
    active = func.coalesce(Opportunity.last_activity_at, Opportunity.updated_at)
    query = (select(Opportunity.id, Opportunity.name, Account.name, Opportunity.stage,
                    Opportunity.owner_id, active)
             .join(Account, Account.id == Opportunity.account_id)
             .where(Opportunity.org_id == org_id, Opportunity.owner_id == owner_id))
    if open_only:
        query = query.where(Opportunity.stage.in_([str(s) for s in OPEN_STAGES]))
    query = query.order_by(active.desc(), Opportunity.name, Opportunity.id).limit(limit)
    return [Candidate(*row) for row in session.execute(query)]


def match(typed: str, found: Sequence[Candidate]) -> list[Candidate]:
    """The opportunities `typed` names best: exact, prefix, part of the name, every word in
    customer + name, the customer alone, then a close misspelling. Open ones win ties."""
    key = name_key(typed)
    if not key:
        return []
    words = key.split()
    scored: list[tuple[float, Candidate]] = []
    for cand in found:
        name, account = name_key(cand.name), name_key(cand.account)
        if name == key:
            score = 100.0
        elif name.startswith(key):
            score = 90.0
        elif key in name:
            score = 80.0
        elif all(w in f"{account} {name}" for w in words):
            score = 70.0
        elif key in account:
            score = 60.0
        else:
            ratio = max(SequenceMatcher(None, key, name).ratio(),
                        SequenceMatcher(None, key, f"{account} {name}").ratio())
            if ratio < FUZZY_RATIO:
                continue
            score = ratio * 50
        scored.append((score, cand))
    if not scored:
        return []
    best = max(score for score, _ in scored)
    if best < 50:  # fuzzy only: a single close one, or all the close ones
        scored.sort(key=lambda item: -item[0])
        if len(scored) == 1 or scored[0][0] - scored[1][0] >= CLEAR_LEAD * 50:
            return [scored[0][1]]
        return [c for _, c in scored]
    top = [c for score, c in scored if score == best]
    opened = [c for c in top if c.open]
    return opened or top


class ProposalCommand:
    """The handler, holding the document writer built (and its templates checked) at start."""

    def __init__(self, writer: doc.ProposalWriter) -> None:
        self.writer = writer

    def __call__(self, req: CommandRequest) -> Sequence[Outbound]:
        session, speaker = req.session, req.speaker
        others: list[Candidate] = []
        if not req.arg:
            mine = candidates(session, speaker.org_id, owner_id=speaker.user_id,
                              open_only=True, limit=PICK_LIMIT + 1)
            if not mine:
                anything = candidates(session, speaker.org_id, owner_id=speaker.user_id,
                                      limit=1)
                key = "proposal.none_open" if anything else "proposal.none_at_all"
                return [Outbound(req.text(key), kind="error")]
            chosen, others = mine[0], mine[1:]
        else:
            typed = req.arg[:200]
            found = match(typed, candidates(session, speaker.org_id, owner_id=speaker.user_id))
            if not found:
                return [Outbound(req.text("proposal.unknown", typed=typed[:80]), kind="error")]
            if len(found) > 1:
                text = req.renderer.template(
                    "proposal_pick.j2", req.ctx.lang, intro=_markup(req, "proposal.pick",
                                                                    typed=typed[:80]),
                    items=self._lines(found[:PICK_LIMIT]))
                return [Outbound(text, kind="error")]
            chosen = found[0]
        data = doc.gather(session, speaker.org_id, chosen.id)
        if data is None:  # deleted between the two queries
            return [Outbound(req.text("proposal.unknown", typed=chosen.name[:80]), kind="error")]
        try:
            made = doc.generate(session, self.writer, data, lang=req.ctx.lang,
                                today=req.ctx.today, now=req.now, org_id=speaker.org_id,
                                user_id=speaker.user_id)
        except doc.ProposalTemplateError as exc:
            return [Outbound(req.text("proposal.template_error", problem=str(exc)[:300]),
                             kind="error")]
        return [self._reply(req, data, made, others)]

    @staticmethod
    def _lines(found: Sequence[Candidate]) -> list[dict[str, str]]:
        """`proposal <name>` lines; a name shared by two opportunities gets its customer."""
        counts: dict[str, int] = {}
        for cand in found:
            counts[name_key(cand.name)] = counts.get(name_key(cand.name), 0) + 1
        return [{"name": cand.name if counts[name_key(cand.name)] == 1
                 else f"{cand.account} {cand.name}", "account": cand.account}
                for cand in found]

    def _reply(self, req: CommandRequest, data: doc.ProposalData, made: doc.Generated,
               others: Sequence[Candidate]) -> Outbound:
        counts = made.rendered.counts
        opp = data.opportunity
        thin = [key for key, missing in (
            ("goals", not counts["goals"]),
            ("problems", not counts["problems"] and not counts["pain"]),
            ("fab", not counts["fab"]),
            ("amount", opp.amount is None),
            ("requests", not counts["signals"] and not counts["criteria"]),
        ) if missing]
        title = req.text("proposal.file_title", version=made.version, opportunity=opp.name)
        plain_title = html.unescape(title)
        text = req.renderer.template(
            "proposal_reply.j2", req.ctx.lang,
            done=_markup(req, "proposal.done", version=made.version, opportunity=opp.name,
                          account=data.account.name,
                          files=f"{made.markdown_name}, {made.docx_name}"),
            parts=[{"number": i, "title": s["title"], "text": s["text"]}
                   for i, s in enumerate(made.rendered.sections, start=1)],
            thin=[_markup(req, f"proposal.thin.{key}") for key in thin],
            internal=counts["internal"], others=self._lines(others))
        # the documents carry the deal's quotation and contacts: for the asker alone, never
        # posted in a group or channel, also not with `share`
        return Outbound(text, private=True, attachments=(
            Attachment(made.markdown_name, made.rendered.markdown.encode("utf-8"),
                       doc.MD_MIME, plain_title),
            Attachment(made.docx_name, made.rendered.docx, doc.DOCX_MIME, plain_title),
        ))


def make_handler(templates_dir: str | None = None) -> Handler:
    from pathlib import Path

    writer = doc.ProposalWriter(load_catalogs(), Path(templates_dir) if templates_dir else None)
    return ProposalCommand(writer)


def register(registry: Registry) -> None:
    settings = registry.settings
    folder = settings.templates_dir if settings is not None else None
    registry.add("proposal", make_handler(str(folder) if folder else None), order=40)
