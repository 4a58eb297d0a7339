"""The outbox: everything the bot says on its own is written to a table, then delivered.

A job (nudges, digests) builds `Post`s and `enqueue`s them in its own unit of work: a row per
post, unique by `dedupe_key`, so the same nudge or digest is never queued twice, even when two
processes run the same pass. The `OutboxWorker` claims due rows, delivers them through the
platform's `FrontEnd.deliver`, paces per chat and per platform, retries, and records the result.

Claims and "never twice"
- A worker claims rows by setting `status=sending`, `claimed_by` and a lease (`lease_until`),
  with `FOR UPDATE SKIP LOCKED` on PostgreSQL so several processes share the work without
  taking the same row. A row whose lease ran out (its worker died) is claimed again: a process
  killed mid-delivery delivers after restart.
- A post may hold several messages (a digest's text and its chart). Each is sent by its own
  `deliver` call and `parts_sent` is committed right after, so a restart resumes after the
  last confirmed message instead of repeating the first ones.
- A message the platform accepted is never sent again. Before each call the worker commits
  `sending_part` (the index of the message about to go: with the row id, the part's key) in
  the same unit of work that renews the lease; recording the platform's id commits
  `parts_sent` and clears it in one step. When that record fails (the database went away
  between the send and the commit), the row is left as it is, not retried: whoever claims it
  next finds `sending_part == parts_sent` and counts that part as sent ("sent but not
  recorded" is sent). A send that failed (`deliver` raised) clears it with the retry.
- A live worker cannot lose its claim while a call is in flight: every call is bounded by
  `deliver_timeout`, and the lease is renewed to at least `2 × deliver_timeout` before each
  call. Completion is recorded only `WHERE claimed_by = <this worker>`.
- The price is the other side of the same window: a process that dies after committing
  `sending_part` and before the platform received the call loses that one message (neither
  chat.postMessage nor sendMessage takes an idempotency key to ask about); it is logged. The
  platform's id of a part recovered that way is unknown (a reply to it posts unthreaded).

Errors (bot/delivery.py `DeliveryError`)
- `retry_after`: the platform's 429 / RetryAfter. The row waits that long (`not_before`), and
  the whole chat is held back for that long in this process.
- `permanent` (blocked, channel gone, bot removed): retried `max_permanent` times with backoff,
  then `status=failed`; the managers' digest lists failed deliveries and unreachable targets.
- Anything else (5xx, a network error): exponential backoff, up to `max_attempts`, then
  `status=dead` (also listed in the digest).

Payload (JSON in `outbox.payload`; front-end engineers: these fields are the contract)
    {
      "v": 1,
      "target": {"org_key": "T0123", "kind": "channel" | "user", "key": "C042"},
      "lang": "en" | "zh",
      "messages": [                         # serialized dialogs.messages.Outbound
        {"text": "<b>neutral</b> markup", "kind": "nudge", "private": false, "multi": false,
         "options": [["/nudge done 3f2a…", "Done"], ...], "controls": [[value, label], ...],
         "progress": null | [i, n],
         "attachments": [{"filename": "funnel.png", "mime": "image/png", "title": "…",
                          "data_b64": "iVBOR…"}],
         "mentions": [{"platform": "slack", "user_key": "U07ABC", "name": "Li Lei"}]}
                          # the people to notify (dialogs.messages.Mention): their platform user
                          # id (Identity.external_id) and display name. The text carries the
                          # neutral form "@Li Lei" (no "<@…>"): a front end whose platform
                          # matches replaces that with its mention.
      ],
      "mentions": [...],  # read only: payloads queued before mentions moved onto the messages
                          # had them here, without "platform" (the row's platform is meant)
      "thread_of": null | "<dedupe_key of the parent post>",
                          # post in the parent's thread (Slack thread_ts / Telegram reply); held
                          # back until the parent is sent, posted unthreaded if the parent failed
      "nudge_ids": ["…"]  # nudges this post announces; marked sent when it is delivered
    }
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import html
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO, cast

from sqlalchemy import Table, and_, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session
from starlette.routing import BaseRoute

from bot.delivery import DeliveryError, FrontEnd, Target
from dialogs.messages import Attachment, Mention, Option, Outbound
from store.db import Database
from store.enums import NudgeStatus, OutboxStatus
from store.models import Nudge, Outbox

log = logging.getLogger(__name__)

_outbox = cast(Table, Outbox.__table__)


# ---- posts and their JSON -------------------------------------------------------------------


@dataclass(frozen=True)
class Post:
    """One thing to post: where, what, and the key that makes it happen once."""

    org_id: uuid.UUID
    platform: str
    target: Target
    messages: tuple[Outbound, ...]
    kind: str
    dedupe_key: str
    lang: str = "en"
    thread_of: str | None = None
    nudge_ids: tuple[str, ...] = ()


def outbound_to_json(message: Outbound) -> dict[str, Any]:
    return {
        "text": str(message.text), "kind": message.kind, "private": message.private,
        "multi": message.multi,
        "options": [[o.value, str(o.label)] for o in message.options],
        "controls": [[o.value, str(o.label)] for o in message.controls],
        "progress": list(message.progress) if message.progress else None,
        "attachments": [{"filename": a.filename, "mime": a.mime, "title": a.title,
                         "data_b64": base64.b64encode(a.data).decode("ascii")}
                        for a in message.attachments],
        "mentions": [{"platform": m.platform, "user_key": m.user_key, "name": m.name}
                     for m in message.mentions],
    }


def outbound_from_json(data: Mapping[str, Any], *, platform: str = "",
                       mentions: Sequence[Mapping[str, Any]] = ()) -> Outbound:
    """An `Outbound` from its JSON. `mentions` (with `platform`) are those of an older payload
    that kept them on the post, applied to a message that has none of its own."""
    progress = data.get("progress")
    own = data.get("mentions")
    return Outbound(
        text=str(data["text"]), kind=str(data.get("kind", "say")),
        private=bool(data.get("private", False)), multi=bool(data.get("multi", False)),
        options=tuple(Option(str(v), str(label)) for v, label in data.get("options", ())),
        controls=tuple(Option(str(v), str(label)) for v, label in data.get("controls", ())),
        progress=(int(progress[0]), int(progress[1])) if progress else None,
        attachments=tuple(Attachment(filename=a["filename"], mime=a["mime"],
                                     title=a.get("title", ""),
                                     data=base64.b64decode(a["data_b64"]))
                          for a in data.get("attachments", ())),
        mentions=tuple(Mention(platform=str(m.get("platform") or platform),
                               user_key=str(m["user_key"]), name=str(m["name"]))
                       for m in (own if own is not None else mentions)),
    )


def post_payload(post: Post) -> dict[str, Any]:
    return {
        "v": 1,
        "target": {"org_key": post.target.org_key, "kind": post.target.kind,
                   "key": post.target.key},
        "lang": post.lang,
        "messages": [outbound_to_json(m) for m in post.messages],
        "thread_of": post.thread_of,
        "nudge_ids": list(post.nudge_ids),
    }


def enqueue(session: Session, posts: Sequence[Post], now: datetime) -> list[str]:
    """Queue `posts`; a post whose `dedupe_key` is already queued is skipped. Returns the
    dedupe keys actually queued. Does not commit (the caller's unit of work does)."""
    if not posts:
        return []
    dialect = session.get_bind().dialect.name
    rows = [{
        "id": uuid.uuid4(), "org_id": post.org_id, "platform": post.platform,
        "channel_id": post.target.key, "thread_id": post.target.thread, "kind": post.kind,
        "payload": post_payload(post), "dedupe_key": post.dedupe_key,
        "status": OutboxStatus.PENDING.value, "attempts": 0, "parts_sent": 0,
        "created_at": now + timedelta(microseconds=i), "not_before": None,
    } for i, post in enumerate(posts)]  # created_at orders a run's posts as queued
    insert_stmt: Any = pg_insert(_outbox) if dialect == "postgresql" else sqlite_insert(_outbox)
    stmt = insert_stmt.on_conflict_do_nothing(index_elements=["dedupe_key"]).returning(
        _outbox.c.dedupe_key, sort_by_parameter_order=True)
    return [key for (key,) in session.execute(stmt, rows)]


# ---- pacing ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Limits:
    """Seconds between two messages to one chat, and overall per platform."""

    per_chat: float
    per_group: float
    overall: float


PLATFORM_LIMITS: dict[str, Limits] = {
    # Slack: about one message per second per channel
    "slack": Limits(per_chat=1.0, per_group=1.0, overall=0.0),
    # Telegram: 1/s per chat, 20/min per group, 30/s overall
    "telegram": Limits(per_chat=1.0, per_group=3.0, overall=1 / 30),
    "console": Limits(per_chat=0.0, per_group=0.0, overall=0.0),
}


class Pacer:
    """Spaces messages per chat and per platform within this process (several processes each
    pace their own share; the platform's 429 covers the rest)."""

    def __init__(self, limits: Mapping[str, Limits] | None = None, *,
                 monotonic: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self.limits = dict(PLATFORM_LIMITS if limits is None else limits)
        self._monotonic = monotonic
        self._sleep = sleep
        self._next: dict[tuple[str, str], float] = {}
        self._overall: dict[str, float] = {}
        self._lock = asyncio.Lock()

    def hold(self, platform: str, chat: str, seconds: float) -> None:
        """The platform said wait (429): nothing more to this chat for `seconds`."""
        key = (platform, chat)
        self._next[key] = max(self._next.get(key, 0.0), self._monotonic() + seconds)

    async def wait(self, platform: str, chat: str, group: bool) -> None:
        limits = self.limits.get(platform, Limits(0.0, 0.0, 0.0))
        key = (platform, chat)
        while True:
            async with self._lock:
                now = self._monotonic()
                ready = max(self._next.get(key, 0.0), self._overall.get(platform, 0.0))
                if ready <= now:
                    self._next[key] = now + (limits.per_group if group else limits.per_chat)
                    self._overall[platform] = now + limits.overall
                    return
            await self._sleep(ready - now)


# ---- the worker -----------------------------------------------------------------------------


@dataclass
class Claimed:
    id: uuid.UUID
    dedupe_key: str
    platform: str
    channel_id: str
    thread_id: str | None
    payload: dict[str, Any]
    attempts: int
    parts_sent: int
    external_message_id: str | None
    parent: tuple[str, str | None] | None = None  # (status, external id) of `thread_of`


@dataclass
class Outcome:
    sent: int = 0
    retried: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)


class OutboxWorker:
    """Claims due outbox rows and delivers them through the front ends, by platform."""

    def __init__(
        self,
        db: Database,
        fronts: Mapping[str, FrontEnd],
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        worker_id: str | None = None,
        pacer: Pacer | None = None,
        batch: int = 50,
        deliver_timeout: float = 30.0,
        max_attempts: int = 8,
        max_permanent: int = 3,
        backoff_base: float = 2.0,
        backoff_cap: float = 900.0,
    ) -> None:
        self.db = db
        self.fronts = dict(fronts)
        self.clock = clock
        self.worker_id = worker_id or f"w-{uuid.uuid4().hex[:12]}"
        self.pacer = pacer or Pacer()
        self.batch = batch
        self.deliver_timeout = deliver_timeout
        self.max_attempts = max_attempts
        self.max_permanent = max_permanent
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap

    @property
    def lease(self) -> timedelta:
        return timedelta(seconds=2 * self.deliver_timeout + 5)

    async def run_once(self) -> Outcome:
        """Claim what is due now and deliver it, chats in parallel, each chat in order."""
        outcome = Outcome()
        if not self.fronts:
            return outcome
        rows = await self.db.run(self._claim, self.clock())
        lanes: dict[tuple[str, str], list[Claimed]] = {}
        for row in rows:
            lanes.setdefault((row.platform, row.channel_id), []).append(row)
        await asyncio.gather(*(self._lane(lane, outcome) for lane in lanes.values()))
        return outcome

    async def drain(self, *, max_rounds: int = 100) -> Outcome:
        """Deliver until nothing is due now (for `salescoach nudges` and tests)."""
        total = Outcome()
        for _ in range(max_rounds):
            out = await self.run_once()
            total.sent += out.sent
            total.retried += out.retried
            total.failed += out.failed
            total.errors.extend(out.errors)
            if not (out.sent or out.failed):
                break
        return total

    async def run_forever(self, stop: asyncio.Event, *, idle: float = 1.0) -> None:
        while not stop.is_set():
            try:
                out = await self.run_once()
            except Exception:
                log.exception("outbox round failed")
                out = Outcome()
            if not (out.sent or out.failed):
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=idle)

    # ---- inside units of work -----------------------------------------------------------

    def _claim(self, session: Session, now: datetime) -> list[Claimed]:
        platforms = sorted(self.fronts)
        due = or_(
            and_(Outbox.status == OutboxStatus.PENDING,
                 or_(Outbox.not_before.is_(None), Outbox.not_before <= now)),
            and_(Outbox.status == OutboxStatus.SENDING, Outbox.lease_until < now),
        )
        query = (select(Outbox).where(Outbox.platform.in_(platforms), due)
                 .order_by(Outbox.created_at, Outbox.id).limit(self.batch))
        if session.get_bind().dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        rows = list(session.scalars(query))
        claimed: list[Claimed] = []
        for row in rows:
            # A conditional update, so the claim holds even where the SELECT took no lock
            # (SQLite: two processes may read the same due row; only one update matches).
            won = session.execute(
                update(Outbox).where(Outbox.id == row.id, due)
                .values(status=OutboxStatus.SENDING, claimed_by=self.worker_id,
                        lease_until=now + self.lease)
                .execution_options(synchronize_session=False))
            if not cast(Any, won).rowcount:
                continue
            parts = row.parts_sent
            if row.sending_part is not None and row.sending_part >= row.parts_sent:
                # its send began and was never recorded: it may have been accepted, so it
                # counts as sent (a duplicate in the team channel is the worse failure)
                parts = row.sending_part + 1
                session.execute(update(Outbox).where(Outbox.id == row.id)
                                .values(parts_sent=parts, sending_part=None)
                                .execution_options(synchronize_session=False))
                log.warning("outbox row %s: part %d was being sent when its worker lost the "
                            "database; counted as sent", row.id, row.sending_part)
            claimed.append(Claimed(row.id, row.dedupe_key, row.platform, row.channel_id,
                                   row.thread_id, dict(row.payload), row.attempts,
                                   parts, row.external_message_id))
        parents = {c.payload.get("thread_of") for c in claimed} - {None}
        if parents:
            found = {key: (status, ext) for key, status, ext in session.execute(
                select(Outbox.dedupe_key, Outbox.status, Outbox.external_message_id)
                .where(Outbox.dedupe_key.in_(parents)))}
            for c in claimed:
                key = c.payload.get("thread_of")
                if key:
                    c.parent = found.get(key, (OutboxStatus.FAILED.value, None))
        session.flush()
        return claimed

    def _mine(self, row_id: uuid.UUID) -> Any:
        return and_(Outbox.id == row_id, Outbox.claimed_by == self.worker_id)

    def _renew(self, session: Session, row_id: uuid.UUID, until: datetime,
               part: int) -> bool:
        """Renew the claim and note that `part` is about to be sent (committed before it is)."""
        result = session.execute(update(Outbox).where(self._mine(row_id))
                                 .values(lease_until=until, sending_part=part))
        return bool(cast(Any, result).rowcount)

    def _part_sent(self, session: Session, row_id: uuid.UUID, parts: int,
                   external_id: str | None, now: datetime, done: bool,
                   nudge_ids: Sequence[str]) -> None:
        values: dict[str, Any] = {"parts_sent": parts, "sending_part": None}
        if external_id is not None:
            values["external_message_id"] = external_id
        if done:
            values.update(status=OutboxStatus.SENT, sent_at=now, claimed_by=None,
                          lease_until=None, last_error=None)
        session.execute(update(Outbox).where(self._mine(row_id)).values(**values))
        if done and nudge_ids:
            session.execute(
                update(Nudge)
                .where(Nudge.id.in_([uuid.UUID(n) for n in nudge_ids]),
                       Nudge.status == NudgeStatus.PENDING)
                .values(status=NudgeStatus.SENT, sent_at=now))

    def _release(self, session: Session, row_id: uuid.UUID, *, status: OutboxStatus,
                 attempts: int, not_before: datetime | None, error: str | None) -> None:
        session.execute(update(Outbox).where(self._mine(row_id)).values(
            status=status, attempts=attempts, not_before=not_before, last_error=error,
            claimed_by=None, lease_until=None, sending_part=None))

    # ---- delivery ---------------------------------------------------------------------

    async def _lane(self, rows: Sequence[Claimed], outcome: Outcome) -> None:
        # parents before the replies in their threads; otherwise in queue order
        ordered = sorted(rows, key=lambda r: r.payload.get("thread_of") is not None)
        posted: dict[str, str | None] = {}
        for row in ordered:
            parent_key = row.payload.get("thread_of")
            if parent_key in posted:
                row.parent = (OutboxStatus.SENT.value, posted[parent_key])
            if row.parent is not None and row.parent[0] in (OutboxStatus.PENDING,
                                                             OutboxStatus.SENDING):
                # the thread's parent is not posted yet: wait for it
                await self.db.run(self._release, row.id, status=OutboxStatus.PENDING,
                                  attempts=row.attempts,
                                  not_before=self.clock() + timedelta(seconds=1), error=None)
                continue
            external = await self._deliver(row, outcome)
            if external is not None:
                posted[row.dedupe_key] = external

    def _target(self, row: Claimed) -> Target:
        spec = row.payload.get("target") or {}
        thread = row.thread_id
        if row.parent is not None and row.parent[0] == OutboxStatus.SENT and row.parent[1]:
            thread = row.parent[1]
        return Target(org_key=str(spec.get("org_key", "")),
                      kind="user" if spec.get("kind") == "user" else "channel",
                      key=str(spec.get("key") or row.channel_id), thread=thread)

    async def _deliver(self, row: Claimed, outcome: Outcome) -> str | None:
        """Deliver one row; the platform id of its first message when it was sent."""
        front = self.fronts[row.platform]
        legacy = row.payload.get("mentions") or ()
        messages = [outbound_from_json(m, platform=row.platform, mentions=legacy)
                    for m in row.payload.get("messages", ())]
        target = self._target(row)
        nudge_ids = [str(n) for n in row.payload.get("nudge_ids", ())]
        parts = row.parts_sent
        if parts >= len(messages):  # confirmed before a crash, not yet marked
            await self.db.run(self._part_sent, row.id, parts, None, self.clock(), True,
                              nudge_ids)
            outcome.sent += 1
            return row.external_message_id
        external = row.external_message_id
        try:
            while parts < len(messages):
                await self.pacer.wait(row.platform, row.channel_id, target.kind == "channel")
                now = self.clock()
                renewed = await self.db.run(self._renew, row.id, now + self.lease, parts)
                if not renewed:
                    log.warning("outbox row %s: claim lost before sending; left alone", row.id)
                    return None
                ids = await asyncio.wait_for(front.deliver(target, [messages[parts]]),
                                             timeout=self.deliver_timeout)
                parts += 1
                first = ids[0] if ids and parts == 1 else None
                external = external or first
                try:
                    await self.db.run(self._part_sent, row.id, parts, first, self.clock(),
                                      parts == len(messages), nudge_ids)
                except Exception:
                    # Sent, but not recorded: never retried as if it had failed. The row
                    # keeps its claim and `sending_part`; when the lease runs out, the next
                    # claim counts the part as sent and goes on with the rest.
                    log.exception("outbox row %s: part %d sent but not recorded; left for "
                                  "recovery", row.id, parts - 1)
                    return None
            outcome.sent += 1
            return external
        except Exception as exc:  # DeliveryError, 5xx, network, timeouts
            await self._failed(row, exc, outcome)
            return None

    async def _failed(self, row: Claimed, exc: Exception, outcome: Outcome) -> None:
        attempts = row.attempts + 1
        now = self.clock()
        reason = str(getattr(exc, "reason", "") or exc) or type(exc).__name__
        error = f"{type(exc).__name__}: {reason}"[:1000]
        outcome.errors.append(error)
        permanent = isinstance(exc, DeliveryError) and exc.permanent
        retry_after = exc.retry_after if isinstance(exc, DeliveryError) else None
        if retry_after is not None:
            self.pacer.hold(row.platform, row.channel_id, retry_after)
            delay = retry_after
        else:
            delay = min(self.backoff_cap, self.backoff_base ** attempts)
        if permanent and attempts >= self.max_permanent:
            status, not_before = OutboxStatus.FAILED, None
        elif not permanent and retry_after is None and attempts >= self.max_attempts:
            status, not_before = OutboxStatus.DEAD, None
        else:
            status, not_before = OutboxStatus.PENDING, now + timedelta(seconds=delay)
        if status == OutboxStatus.PENDING:
            outcome.retried += 1
            log.info("outbox row %s: %s; retry in %.1fs", row.id, error, delay)
        else:
            outcome.failed += 1
            log.warning("outbox row %s: %s; giving up (%s)", row.id, error, status.value)
        await self.db.run(self._release, row.id, status=status, attempts=attempts,
                          not_before=not_before, error=error)


# ---- the terminal ---------------------------------------------------------------------------

_TAGS = re.compile(r"</?(b|i|code)>")


def plain(markup: str) -> str:
    return html.unescape(_TAGS.sub("", markup))


class PrintingFrontEnd:
    """A front end that prints: the console platform, and every platform under --dry-run.
    Attachments are written to `attachment_dir` and their paths printed."""

    def __init__(self, out: TextIO, attachment_dir: Path, *, platform: str = "console") -> None:
        self.platform = platform
        self.out = out
        self.attachment_dir = attachment_dir
        self._count = 0

    def routes(self) -> Sequence[BaseRoute]:
        return ()

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def deliver(self, target: Target, messages: Sequence[Outbound]) -> list[str]:
        ids: list[str] = []
        for message in messages:
            self._count += 1
            where = f"{target.kind} {target.key}"
            if target.thread:
                where += f", thread of {target.thread}"
            print(f"── to {where} ──", file=self.out)
            print(plain(str(message.text)), file=self.out)
            for option in message.options:
                print(f"  [{plain(option.label)}] → {option.value}", file=self.out)
            for attachment in message.attachments:
                self.attachment_dir.mkdir(parents=True, exist_ok=True)
                path = self.attachment_dir / attachment.filename
                path.write_bytes(attachment.data)
                print(f"  (attachment: {path.resolve()})", file=self.out)
            print("", file=self.out)
            ids.append(f"{self.platform}-{self._count}")
        return ids
