"""`digest`: the daily digest now; `digest on` / `digest off` subscribe or unsubscribe."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import select

from bot.commands import CommandRequest, Registry
from bot.digest import digest_now
from bot.rules import Rules
from dialogs.messages import Outbound
from store.models import DigestSubscription, Org

ON = ("on", "subscribe", "开", "开启", "订阅")
OFF = ("off", "unsubscribe", "关", "关闭", "退订")


def handle(req: CommandRequest) -> Sequence[Outbound]:
    arg = req.arg.strip().casefold()
    if not arg:
        message = digest_now(req.session, req.renderer, req.speaker.user_id, req.now)
        return [message or Outbound(req.text("jobs.digest.nobody"))]
    if arg in ON or arg in OFF:
        return [_subscribe(req, arg in ON)]
    return [Outbound(req.text("jobs.digest.usage"), kind="error")]


def _subscribe(req: CommandRequest, active: bool) -> Outbound:
    session, speaker = req.session, req.speaker
    sub = session.scalar(select(DigestSubscription).where(
        DigestSubscription.user_id == speaker.user_id,
        DigestSubscription.platform == req.inbound.platform))
    rules = Rules.for_org(session.scalar(select(Org.settings).where(Org.id == speaker.org_id)))
    if sub is None:
        sub = DigestSubscription(id=uuid.uuid4(), org_id=speaker.org_id,
                                 user_id=speaker.user_id, platform=req.inbound.platform,
                                 hour=rules.digest_time.hour, minute=rules.digest_time.minute,
                                 weekdays=sorted(rules.digest_weekdays), created_at=req.now)
        session.add(sub)
    sub.active = active
    if req.inbound.chat == "private" and req.inbound.chat_key:
        sub.channel_id = req.inbound.chat_key
    session.flush()
    if not active:
        return Outbound(req.text("jobs.digest.unsubscribed"))
    return Outbound(req.text("jobs.digest.subscribed", time=f"{sub.hour:02d}:{sub.minute:02d}"))


def register(registry: Registry) -> None:
    registry.add("digest", handle, order=70)
