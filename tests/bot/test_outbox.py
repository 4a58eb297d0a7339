"""The outbox worker against a scripted front end: 429, 5xx, permanent errors, a kill
mid-delivery, multi-part posts, threads, pacing, and two workers sharing the rows."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.delivery import DeliveryError, Target
from bot.outbox import (
    Limits,
    OutboxWorker,
    Pacer,
    Post,
    enqueue,
    outbound_from_json,
    outbound_to_json,
)
from dialogs.messages import Attachment, Mention, Option, Outbound
from store.db import Database
from store.models import Nudge, Org, Outbox
from tests.bot.jobs_data import ORG

T0 = datetime(2026, 11, 30, 2, 0, tzinfo=UTC)
NO_PACING = Pacer({"slack": Limits(0.0, 0.0, 0.0)})


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class ScriptedFront:
    """Records deliveries; each call first takes the next scripted failure, if any."""

    platform = "slack"

    def __init__(self, script: Sequence[Exception | None] = ()) -> None:
        self.script = list(script)
        self.sent: list[tuple[Target, str]] = []
        self.messages: list[Outbound] = []
        self.block: asyncio.Event | None = None
        self.entered = asyncio.Event()

    def routes(self) -> Sequence[Any]:
        return ()

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def deliver(self, target: Target, messages: Sequence[Outbound]) -> list[str]:
        self.entered.set()
        if self.block is not None:
            await self.block.wait()
        if self.script:
            failure = self.script.pop(0)
            if failure is not None:
                raise failure
        ids = []
        for message in messages:
            self.sent.append((target, str(message.text)))
            self.messages.append(message)
            ids.append(f"ts-{len(self.sent)}")
        return ids


def post(key: str, *texts: str, channel: str = "C1", thread_of: str | None = None,
         nudge_ids: tuple[str, ...] = ()) -> Post:
    return Post(org_id=ORG, platform="slack",
                target=Target(org_key="T1", kind="channel", key=channel),
                messages=tuple(Outbound(t) for t in texts or (key,)), kind="nudge",
                dedupe_key=key, thread_of=thread_of, nudge_ids=nudge_ids)


async def queue(db: Database, *posts: Post) -> None:
    def work(session: Session) -> None:
        if session.get(Org, ORG) is None:
            session.add(Org(id=ORG, name="Acme", platform="slack", external_id="T1"))
            session.flush()
        enqueue(session, posts, T0)

    await db.run(work)


async def rows(db: Database) -> dict[str, tuple[str, int, str | None]]:
    def read(session: Session) -> dict[str, tuple[str, int, str | None]]:
        return {r.dedupe_key: (r.status, r.attempts, r.external_message_id)
                for r in session.scalars(select(Outbox))}

    return await db.run(read)


def worker(db: Database, front: ScriptedFront, clock: Clock, **kw: Any) -> OutboxWorker:
    return OutboxWorker(db, {"slack": front}, clock=clock, pacer=kw.pop("pacer", NO_PACING),
                        **kw)


def test_outbound_round_trips_through_json() -> None:
    message = Outbound("<b>x</b>", kind="digest", options=(Option("/nudge done 1", "Done"),),
                       attachments=(Attachment("f.png", b"\x89PNG", "image/png", "Funnel"),),
                       private=True, progress=(1, 3),
                       mentions=(Mention("slack", "U07ABC", "Li Lei"),
                                 Mention("telegram", "8001", "A &amp; <b>")))
    assert outbound_from_json(outbound_to_json(message)) == message


async def test_mentions_travel_on_the_message_and_old_payloads_still_deliver(
        db: Database) -> None:
    li = Mention("slack", "U_LI", "Li")
    await queue(db, Post(org_id=ORG, platform="slack",
                         target=Target(org_key="T1", kind="channel", key="C1"),
                         messages=(Outbound("stalled · @Li", mentions=(li,)),), kind="nudge",
                         dedupe_key="new"),
                post("old", "overdue · @Zhang"))

    def legacy(session: Session) -> None:
        # queued before mentions moved onto the messages: the post held them, no platform
        row = session.scalars(select(Outbox).where(Outbox.dedupe_key == "old")).one()
        payload = dict(row.payload)
        assert "mentions" not in payload and payload["messages"][0]["mentions"] == []
        payload["messages"] = [{k: v for k, v in m.items() if k != "mentions"}
                               for m in payload["messages"]]
        payload["mentions"] = [{"user_key": "U_ZHANG", "name": "Zhang"}]
        row.payload = payload

    await db.run(legacy)
    front = ScriptedFront()
    assert (await worker(db, front, Clock()).run_once()).sent == 2
    got = {str(m.text): m.mentions for m in front.messages}
    assert got == {"stalled · @Li": (li,),
                   "overdue · @Zhang": (Mention("slack", "U_ZHANG", "Zhang"),)}


async def test_delivers_once_and_marks_sent(db: Database) -> None:
    await queue(db, post("a"), post("b", channel="C2"))
    await queue(db, post("a"))  # the same key again: ignored
    front, clock = ScriptedFront(), Clock()
    out = await worker(db, front, clock).run_once()
    assert out.sent == 2 and sorted(t for _t, t in front.sent) == ["a", "b"]
    assert {k: v[0] for k, v in (await rows(db)).items()} == {"a": "sent", "b": "sent"}
    assert (await worker(db, front, clock).run_once()).sent == 0
    assert len(front.sent) == 2


async def test_429_waits_the_retry_after_then_delivers(db: Database) -> None:
    await queue(db, post("a"))
    front, clock = ScriptedFront([DeliveryError("rate limited", retry_after=30)]), Clock()
    w = worker(db, front, clock)
    out = await w.run_once()
    assert out.retried == 1 and front.sent == []
    clock.advance(20)
    assert (await w.run_once()).sent == 0  # still inside Retry-After
    clock.advance(11)
    assert (await w.run_once()).sent == 1
    assert (await rows(db))["a"][:2] == ("sent", 1) and len(front.sent) == 1


async def test_5xx_backs_off_and_gives_up_as_dead(db: Database) -> None:
    await queue(db, post("a"))
    front = ScriptedFront([RuntimeError("500 Internal Server Error"), None])
    clock = Clock()
    w = worker(db, front, clock, max_attempts=3, backoff_base=2.0)
    assert (await w.run_once()).retried == 1
    clock.advance(1)
    assert (await w.run_once()).sent == 0  # backing off 2 s
    clock.advance(2)
    assert (await w.run_once()).sent == 1
    assert (await rows(db))["a"][:2] == ("sent", 1)

    await queue(db, post("b"))
    front.script = [RuntimeError("503")] * 3
    for _ in range(5):
        await w.run_once()
        clock.advance(60)
    assert (await rows(db))["b"][:2] == ("dead", 3)
    assert [t for _t, t in front.sent] == ["a"]


async def test_permanent_errors_fail_after_repeats(db: Database) -> None:
    await queue(db, post("a"))
    front = ScriptedFront([DeliveryError("channel_not_found", permanent=True)] * 3)
    clock = Clock()
    w = worker(db, front, clock, max_permanent=3)
    for _ in range(4):
        await w.run_once()
        clock.advance(60)
    status, attempts, _ext = (await rows(db))["a"]
    assert (status, attempts) == ("failed", 3) and front.sent == []

    def error(session: Session) -> str | None:
        return session.scalar(select(Outbox.last_error))

    assert "channel_not_found" in (await db.run(error) or "")


async def test_killed_mid_delivery_delivers_the_rest_after_restart_and_nothing_twice(
        db: Database) -> None:
    await queue(db, post("a", "a1", "a2"), post("b"))
    hanging = ScriptedFront()
    hanging.block = asyncio.Event()
    clock = Clock()
    first = worker(db, hanging, clock, deliver_timeout=30)
    task = asyncio.create_task(first.run_once())
    await asyncio.wait_for(hanging.entered.wait(), 5)
    task.cancel()  # the process dies while the call for a1 is in flight
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert (await rows(db))["a"][0] == "sending"
    restarted = ScriptedFront()
    second = worker(db, restarted, clock, deliver_timeout=30)
    assert (await second.run_once()).sent == 0  # the dead worker's lease still holds
    clock.advance(66)
    assert (await second.run_once()).sent == 2
    # a1 may have reached the platform before the process died: it counts as sent, and
    # what was not in flight is delivered
    assert [t for _t, t in restarted.sent] == ["a2", "b"] and hanging.sent == []
    assert {k: v[0] for k, v in (await rows(db)).items()} == {"a": "sent", "b": "sent"}
    clock.advance(600)
    assert (await second.run_once()).sent == 0


async def test_a_post_in_parts_resumes_after_the_last_confirmed_part(db: Database) -> None:
    await queue(db, post("digest", "text part", "chart part"))
    front = ScriptedFront([None, RuntimeError("502 Bad Gateway")])
    clock = Clock()
    w = worker(db, front, clock)
    await w.run_once()
    clock.advance(10)
    await w.run_once()
    assert [t for _t, t in front.sent] == ["text part", "chart part"]
    assert (await rows(db))["digest"][2] == "ts-1"  # the first part's id is the post's


async def test_thread_replies_wait_for_their_parent(db: Database) -> None:
    await queue(db, post("child", thread_of="group"), post("group", channel="C1"))
    front = ScriptedFront()
    clock = Clock()
    w = worker(db, front, clock)
    await w.run_once()
    clock.advance(2)
    await w.drain()
    assert [(t.thread, text) for t, text in front.sent] == [(None, "group"), ("ts-1", "child")]


async def test_marks_its_nudges_sent(db: Database) -> None:
    nudge_id = uuid.uuid4()

    def add(session: Session) -> None:
        session.add(Org(id=ORG, name="Acme", platform="slack", external_id="T1"))
        session.flush()
        session.add(Nudge(id=nudge_id, org_id=ORG, subject_type="opportunity",
                          subject_id=uuid.uuid4(), rule="stalled", period="p"))

    await db.run(add)
    await queue(db, post("n", nudge_ids=(str(nudge_id),)))
    await worker(db, ScriptedFront(), Clock()).run_once()

    def status(session: Session) -> tuple[str, datetime | None]:
        nudge = session.get(Nudge, nudge_id)
        assert nudge is not None
        return nudge.status, nudge.sent_at

    assert await db.run(status) == ("sent", T0)


async def test_paces_each_chat() -> None:
    now = [0.0]
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(round(seconds, 3))
        now[0] += seconds

    pacer = Pacer({"telegram": Limits(per_chat=1.0, per_group=3.0, overall=0.1)},
                  monotonic=lambda: now[0], sleep=sleep)
    await pacer.wait("telegram", "chat1", False)
    await pacer.wait("telegram", "chat1", False)   # 1/s per chat
    await pacer.wait("telegram", "group", True)    # overall 10/s here
    await pacer.wait("telegram", "group", True)    # 20/min per group
    assert slept == [1.0, 0.1, 3.0]
    pacer.hold("telegram", "chat1", 30)            # the platform said 429
    await pacer.wait("telegram", "chat1", False)
    assert slept[-1] == 30.0


async def test_two_workers_share_rows_without_sending_twice(db: Database,
                                                            database_url: str) -> None:
    await queue(db, *(post(f"p{i}", channel=f"C{i % 7}") for i in range(40)))
    front_a, front_b = ScriptedFront(), ScriptedFront()
    other = Database(database_url)
    try:
        clock = Clock()
        wa = OutboxWorker(db, {"slack": front_a}, clock=clock, pacer=NO_PACING, batch=10)
        wb = OutboxWorker(other, {"slack": front_b}, clock=clock, pacer=NO_PACING, batch=10)
        await asyncio.gather(wa.drain(), wb.drain())
    finally:
        await other.dispose()
    texts = [t for _t, t in front_a.sent + front_b.sent]
    assert sorted(texts) == sorted(f"p{i}" for i in range(40))
    assert {v[0] for v in (await rows(db)).values()} == {"sent"}


# ---- through the real front ends, against the fake Slack and Telegram servers ---------------


async def test_slack_429_and_500_through_the_real_front_end(db: Database,
                                                            database_url: str) -> None:
    from tests.fakes.slack_api import TEAM_ID, FakeSlackAPI
    from tests.handlers.slack.harness import make_client

    with FakeSlackAPI() as fake:
        fake.add_channel("C0SALES", "sales", is_member=True)
        client, http = await make_client(fake, database_url)
        try:
            def org(session: Session) -> None:
                session.add(Org(id=ORG, name="Acme", platform="slack", external_id=TEAM_ID))
                session.flush()
                enqueue(session, [Post(org_id=ORG, platform="slack",
                                       target=Target(TEAM_ID, "channel", "C0SALES"),
                                       messages=(Outbound(f"<b>nudge {i}</b>"),), kind="nudge",
                                       dedupe_key=f"k{i}") for i in range(2)], T0)

            await db.run(org)
            clock = Clock()
            w = OutboxWorker(db, {"slack": client.front}, clock=clock, pacer=NO_PACING)
            # slack_sdk retries 3 times by itself (handlers/slack); what outlasts that
            # reaches the outbox: a 429 for the first post, 500s for the second
            fake.fail_next(4, status=429, retry_after=1, method="chat.postMessage")
            fake.fail_next(4, status=500, method="chat.postMessage")
            first = await w.run_once()
            assert first.retried == 2 and first.sent == 0
            assert (await w.run_once()).sent == 0          # both wait
            clock.advance(3)
            assert (await w.run_once()).sent == 2
            clock.advance(600)
            assert (await w.run_once()).sent == 0
            posts = fake.calls("chat.postMessage")
            assert [p.status for p in posts] == [429] * 4 + [500] * 4 + [200, 200]
            assert sorted(p.params["text"] for p in posts if p.ok) == ["*nudge 0*", "*nudge 1*"]
            assert {v[0] for v in (await rows(db)).values()} == {"sent"}
        finally:
            await client.front.stop()
            await http.aclose()
            await client.app.close()


async def test_telegram_429_and_500_through_the_real_front_end(db: Database) -> None:
    from tests.handlers.telegram.harness import running

    group = -100555
    async with running(db) as h:
        def org(session: Session) -> None:
            session.add(Org(id=ORG, name="Acme", platform="telegram", external_id="bot"))
            session.flush()
            enqueue(session, [Post(org_id=ORG, platform="telegram",
                                   target=Target("bot", "channel", str(group)),
                                   messages=(Outbound(f"<b>nudge {i}</b>"),), kind="nudge",
                                   dedupe_key=f"t{i}") for i in range(2)], T0)

        await db.run(org)
        clock = Clock()
        w = OutboxWorker(db, {"telegram": h.front}, clock=clock,
                         pacer=Pacer({"telegram": Limits(0.0, 0.0, 0.0)}))
        h.api.fail_next(1, "429", method="sendMessage", retry_after=7)
        h.api.fail_next(1, "500", method="sendMessage")
        first = await w.run_once()
        assert first.retried == 2 and first.sent == 0
        clock.advance(3)
        assert (await w.run_once()).sent == 1
        clock.advance(5)
        assert (await w.run_once()).sent == 1
        clock.advance(600)
        assert (await w.run_once()).sent == 0
        sent = h.api.calls_to("sendMessage", chat_id=group, ok=True)
        assert sorted(c.params["text"] for c in sent) == ["<b>nudge 0</b>", "<b>nudge 1</b>"]
        assert len(h.api.calls_to("sendMessage", chat_id=group, ok=False)) == 2
