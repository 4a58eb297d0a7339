"""Editing a whole record in a modal: an account or a contact, every field at once.

`/coach edit account <name>` (or the Edit button on the Home tab) opens a modal filled with the
current values. On submit every field is checked with the same parsers and limits as the
dialogs; problems are shown inline on their fields (`response_action: errors`) and nothing is
saved until all are right. Saving is one unit of work through `store.records`.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast

from slack_bolt.context.ack.async_ack import AsyncAck
from sqlalchemy import select
from sqlalchemy.orm import Session

from dialogs.flow import FLOWS_DIR, OptionDef, load_vocab
from dialogs.messages import Outbound
from dialogs.parsing import ParseError, parse_number
from handlers.slack.render import plain_label
from store import conversations as conv
from store import permissions, records, search
from store.limits import clean, limit_for
from store.models import Account, Contact
from store.permissions import Access

if TYPE_CHECKING:
    from handlers.slack.frontend import SlackFrontEnd, Where

CALLBACK_PREFIX = "sc_edit_"
VALUE = "v"
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


@dataclass(frozen=True)
class Field:
    name: str
    kind: str = "text"          # text | long | number | email | select | multi
    required: bool = False
    # a length below what the column holds (store/limits.py), for the long free texts
    limit: int | None = None
    vocab: str | None = None


FIELDS: dict[str, tuple[Field, ...]] = {
    "account": (
        Field("name", required=True),
        Field("industry", "select", vocab="industry"),
        Field("nature", "select", vocab="nature"),
        Field("size_employees", "number"),
        Field("business", "long", limit=2000),
        Field("source_method", "select", vocab="source_method"),
        Field("address", limit=500),
        Field("postcode"),
        Field("website"),
        Field("org_notes", "long", limit=4000),
    ),
    "contact": (
        Field("name", required=True),
        Field("title"),
        Field("level", "select", vocab="level"),
        Field("function", "select", vocab="function"),
        Field("buying_roles", "multi", vocab="buying_role"),
        Field("insider_level", "select", vocab="insider_level"),
        Field("comm_style", "select", vocab="comm_style"),
        Field("relationship_stage", "select", vocab="relationship_stage"),
        Field("phone"),
        Field("email", "email"),
        Field("work_notes", "long", limit=4000),
        Field("personal_notes", "long", limit=4000),
    ),
}
MODELS: dict[str, type[Account] | type[Contact]] = {"account": Account, "contact": Contact}
TABLES = {"account": "accounts", "contact": "contacts"}

_VOCAB: dict[str, tuple[OptionDef, ...]] = {}


def vocab(name: str) -> tuple[OptionDef, ...]:
    if not _VOCAB:
        _VOCAB.update(load_vocab(FLOWS_DIR / "vocab.yaml"))
    return _VOCAB[name]


# ---- finding the record and who may edit it -------------------------------------------------


@dataclass(frozen=True)
class Found:
    """A record to edit (values by field), or why not: `problem` is a catalog key."""

    kind: str
    record_id: str | None = None
    values: dict[str, Any] | None = None
    lang: str = "en"
    problem: str | None = None
    suggestions: tuple[str, ...] = ()
    # whether the form may show (and save) personal notes: the owner and their managers
    personal: bool = False


PERSONAL_FIELDS = frozenset({"personal_notes"})


def _speaker(session: Session, front: SlackFrontEnd, where: Where,
             now: datetime) -> conv.Speaker:
    return conv.ensure_speaker(
        session, platform="slack", org_key=where.team, user_key=where.user,
        display_name=where.user, lang=None, default_lang=front.coach.default_lang,
        default_tz=front.coach.default_tz, now=now,
        role="admin" if where.user in front.coach.admins else "rep")


SEARCHES = {"account": search.search_accounts, "contact": search.search_contacts}


def find_record(session: Session, front: SlackFrontEnd, where: Where, kind: str, *,
                name: str | None = None, record_id: str | None = None,
                now: datetime) -> Found:
    speaker = _speaker(session, front, where, now)
    lang = speaker.lang or speaker.org_lang or front.coach.default_lang
    model = MODELS[kind]
    # the form edits what the speaker may manage (their own records, a manager their team's,
    # an admin the org's: store/permissions.py); anything else is "not found", as a name that
    # does not exist, and "did you mean" offers only names in that scope. Personal notes
    # only for the owner and the owner's managers.
    who = permissions.viewer(session, speaker.org_id, speaker.user_id, speaker.role)
    query = select(model).where(model.org_id == speaker.org_id,
                                who.owner_clause(model.owner_id, Access.MANAGE))
    if record_id is None:  # by the partial names the look-ups take (`edit account daqing`)
        matches = SEARCHES[kind](session, who, name or "", access=Access.MANAGE)
        chosen = search.decide(matches)
        if chosen is None:
            return Found(kind, lang=lang, problem="slack.edit.not_found",
                         suggestions=tuple(dict.fromkeys(m.name for m in matches))[:3])
        record_id = str(chosen.id)
    try:
        query = query.where(model.id == uuid.UUID(record_id))
    except ValueError:
        return Found(kind, lang=lang, problem="slack.edit.gone")
    record = cast("Account | Contact | None",
                  session.execute(query.limit(1)).scalar_one_or_none())
    if record is None:  # gone, or not the speaker's to edit: the same answer
        return Found(kind, lang=lang, problem="slack.edit.gone")
    personal = who.may_see_personal(record.owner_id)
    values = {f.name: getattr(record, f.name) for f in FIELDS[kind]
              if personal or f.name not in PERSONAL_FIELDS}
    return Found(kind, str(record.id), values, lang, personal=personal)


# ---- the modal --------------------------------------------------------------------------------


def _plain(text: str, limit: int = 150) -> dict[str, Any]:
    return {"type": "plain_text", "text": text[:limit], "emoji": True}


def _option(option: OptionDef, lang: str) -> dict[str, Any]:
    return {"text": _plain(plain_label(option.label(lang))), "value": option.value}


def modal_view(front: SlackFrontEnd, found: Found) -> dict[str, Any]:
    lang, kind = found.lang, found.kind
    values = found.values or {}

    def text(key: str, limit: int = 150) -> str:
        return plain_label(front.r.text(lang, key), limit=limit)

    blocks: list[dict[str, Any]] = []
    for f in FIELDS[kind]:
        if f.name in PERSONAL_FIELDS and not found.personal:
            continue
        current = values.get(f.name)
        element: dict[str, Any] = {"action_id": VALUE}
        if f.kind in ("select", "multi"):
            options = vocab(f.vocab or "")
            element["type"] = "static_select" if f.kind == "select" else "multi_static_select"
            element["options"] = [_option(o, lang) for o in options]
            element["placeholder"] = _plain(text("slack.choose"))
            chosen = [o for o in options
                      if (current == o.value if f.kind == "select"
                          else o.value in (current or []))]
            if chosen and f.kind == "select":
                element["initial_option"] = _option(chosen[0], lang)
            elif chosen:
                element["initial_options"] = [_option(o, lang) for o in chosen]
        else:
            element["type"] = "plain_text_input"
            element["multiline"] = f.kind == "long"
            if current is not None and current != "":
                element["initial_value"] = str(current)
        blocks.append({"type": "input", "block_id": f.name, "optional": not f.required,
                       "label": _plain(text(f"slack.field.{kind}.{f.name}")),
                       "element": element})
    return {
        "type": "modal",
        "callback_id": f"{CALLBACK_PREFIX}{kind}",
        "title": _plain(text(f"slack.edit.title.{kind}", limit=24), limit=24),
        "submit": _plain(text("slack.edit.save", limit=24), limit=24),
        "close": _plain(text("slack.edit.close", limit=24), limit=24),
        "private_metadata": json.dumps({"kind": kind, "id": found.record_id, "lang": lang}),
        "blocks": blocks,
    }


async def _open(front: SlackFrontEnd, where: Where, found: Found, trigger_id: str,
                name: str = "") -> None:
    if found.problem is not None:
        note = front.text(found.lang, found.problem, name=name,
                          kind=front.text(found.lang, f"slack.kind.{found.kind}"),
                          suggestions=list(found.suggestions))
        channel = where.channel
        if channel is not None and where.ephemeral:
            await front.ephemeral(where, [Outbound(note, kind="error")], found.lang)
        else:
            await front.post(channel or await front.dm_channel(where.user),
                             [Outbound(note, kind="error")], found.lang)
        return
    await front.client.views_open(trigger_id=trigger_id, view=modal_view(front, found))


async def open_by_name(front: SlackFrontEnd, where: Where, kind: str, name: str,
                       trigger_id: str) -> None:
    found = await front.app.db.run(lambda s: find_record(
        s, front, where, kind, name=name, now=front.coach.clock()))
    await _open(front, where, found, trigger_id, name)


async def open_by_id(front: SlackFrontEnd, where: Where, kind: str, record_id: str,
                     trigger_id: str) -> None:
    if kind not in MODELS:
        return
    found = await front.app.db.run(lambda s: find_record(
        s, front, where, kind, record_id=record_id, now=front.coach.clock()))
    await _open(front, where, found, trigger_id)


# ---- submission -------------------------------------------------------------------------------


def validate(front: SlackFrontEnd, kind: str, lang: str,
             state: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """(values to save, errors by field) from a submitted view's `state.values`."""
    r = front.r
    values: dict[str, Any] = {}
    errors: dict[str, str] = {}

    def err(name: str, key: str, **params: Any) -> None:
        errors[name] = plain_label(r.text(lang, key, **params), limit=2000)

    for f in FIELDS[kind]:
        entry = (state.get(f.name) or {}).get(VALUE) or {}
        if f.kind == "select":
            picked = (entry.get("selected_option") or {}).get("value")
            if picked is not None and picked not in {o.value for o in vocab(f.vocab or "")}:
                err(f.name, "slack.edit.bad_option")
                continue
            values[f.name] = picked
            continue
        if f.kind == "multi":
            picked_all = [o.get("value") for o in entry.get("selected_options") or []]
            known = {o.value for o in vocab(f.vocab or "")}
            if any(p not in known for p in picked_all):
                err(f.name, "slack.edit.bad_option")
                continue
            values[f.name] = picked_all
            continue
        column = limit_for(TABLES[kind], f.name)
        # no NUL or other control character gets in; one line where the column holds one
        raw = (column.clean(entry.get("value") or "") if column is not None
               else clean(entry.get("value") or "")).strip()
        if not raw:
            if f.required:
                err(f.name, "slack.edit.required")
            else:
                values[f.name] = None
            continue
        if f.kind == "number":
            try:
                values[f.name] = int(parse_number(raw, minimum=None, integer=True))
            except ParseError as exc:
                err(f.name, f"parse.{exc.code}", **exc.params)
                continue
            if values[f.name] < 0:
                err(f.name, "parse.number_range", minimum="0", maximum=None)
            elif column is not None and (refused := column.check(values[f.name])):
                err(f.name, f"err.{refused.code}", **refused.params)
            continue
        limit = min(n for n in (f.limit, column.max_length if column else None, 10_000)
                    if n is not None)
        if len(raw) > limit:
            err(f.name, "err.too_long", length=len(raw), limit=limit)
            continue
        refused = column.check(raw) if column is not None else None
        if refused is not None:
            err(f.name, f"err.{refused.code}", **refused.params)
            continue
        if f.kind == "email" and not _EMAIL.match(raw):
            err(f.name, "slack.edit.bad_email")
            continue
        values[f.name] = raw
    return values, errors


def save(session: Session, front: SlackFrontEnd, where: Where, kind: str, record_id: str,
         values: dict[str, Any], now: datetime) -> str | None:
    """Write the record; None if it is gone or no longer the user's to edit (a catalog key
    otherwise... returned as the problem)."""
    found = find_record(session, front, where, kind, record_id=record_id, now=now)
    if found.problem is not None:
        return found.problem
    if not found.personal:  # not shown to them, so not theirs to change
        values = {k: v for k, v in values.items() if k not in PERSONAL_FIELDS}
    speaker = _speaker(session, front, where, now)
    records.upsert(session, TABLES[kind], record_id, values, org_id=speaker.org_id,
                   user_id=speaker.user_id, now=now)
    return None


async def submit(front: SlackFrontEnd, ack: AsyncAck, body: dict[str, Any],
                 view: dict[str, Any]) -> None:
    from handlers.slack.frontend import Where, new_request_id

    meta = json.loads(view.get("private_metadata") or "{}")
    kind, record_id = meta.get("kind"), meta.get("id")
    lang = meta.get("lang") or front.settings.lang
    user = body.get("user") or {}
    where = Where(team=(body.get("team") or {}).get("id") or user.get("team_id") or "",
                  user=user.get("id", ""), request_id=new_request_id())
    if kind not in FIELDS or not record_id:
        await ack()
        return
    values, errors = validate(front, kind, lang, (view.get("state") or {}).get("values") or {})
    if errors:
        await ack(response_action="errors", errors=errors)
        return
    await ack()

    async def work() -> None:
        problem = await front.app.db.run(lambda s: save(
            s, front, where, kind, record_id, values, front.coach.clock()))
        dm = await front.dm_channel(where.user)
        if problem is not None:
            note = front.text(lang, problem, name=values.get("name", ""),
                              kind=front.text(lang, f"slack.kind.{kind}"), suggestions=[])
            await front.post(dm, [Outbound(note, kind="error")], lang)
            return
        await front.post(dm, [Outbound(front.text(lang, "slack.edit.saved",
                                                  kind=front.text(lang, f"slack.kind.{kind}"),
                                                  name=values["name"]))], lang)

    front.after_ack(where, work)
