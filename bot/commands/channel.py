"""`channel`: make the chat it is typed in the org's team channel, where nudges are posted.

Only an admin may do it: a user listed in SALESCOACH_ADMINS, or, when that list is empty, the
first user of the org to bind a channel (who becomes the admin). One active team channel per org
and platform: binding a new one retires the old.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select, update

from bot.commands import CommandRequest, Registry
from dialogs.messages import Outbound
from store import conversations as conv
from store.enums import Role
from store.models import TeamChannel, User


def bind_channel(req: CommandRequest) -> Sequence[Outbound]:
    inbound = req.inbound
    if inbound.chat != "channel" or not inbound.chat_key:
        return [Outbound(req.text("channel.not_here"), kind="error")]
    session, speaker = req.session, req.speaker
    if speaker.role != Role.ADMIN:
        has_admin = session.execute(
            select(User.id).where(User.org_id == speaker.org_id, User.role == Role.ADMIN).limit(1)
        ).first() is not None
        if req.admins or has_admin:
            return [Outbound(req.text("channel.admin_only"), kind="error")]
        conv.set_role(session, speaker.user_id, Role.ADMIN, req.now)
    existing = session.execute(
        select(TeamChannel).where(TeamChannel.org_id == speaker.org_id,
                                  TeamChannel.platform == inbound.platform,
                                  TeamChannel.channel_id == inbound.chat_key)
    ).scalar_one_or_none()
    session.execute(
        update(TeamChannel)
        .where(TeamChannel.org_id == speaker.org_id, TeamChannel.platform == inbound.platform,
               TeamChannel.channel_id != inbound.chat_key)
        .values(active=False)
    )
    if existing is None:
        session.add(TeamChannel(org_id=speaker.org_id, platform=inbound.platform,
                                channel_id=inbound.chat_key, name=inbound.chat_name,
                                bound_by=speaker.user_id, bound_at=req.now, active=True))
    else:
        existing.active = True
        existing.bound_by = speaker.user_id
        existing.bound_at = req.now
        if inbound.chat_name:
            existing.name = inbound.chat_name
    session.flush()
    return [Outbound(req.text("channel.bound", name=inbound.chat_name or inbound.chat_key))]


def register(registry: Registry) -> None:
    registry.add("channel", bind_channel, order=90, in_place=True)
