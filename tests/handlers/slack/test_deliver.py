"""`deliver`, what the outbox calls: channel or DM, files, long texts, and Slack's errors
mapped to DeliveryError (retry later, or give up on the target)."""

from __future__ import annotations

import pytest

from bot.delivery import DeliveryError, Target
from dialogs.messages import Attachment, Option, Outbound
from tests.fakes.slack_api import TEAM_ID
from tests.handlers.slack.harness import CHANNEL, SlackClient, plain


async def test_deliver_to_a_channel_groups_messages_and_returns_their_ids(
        slack: SlackClient) -> None:
    ids = await slack.front.deliver(Target(TEAM_ID, "channel", CHANNEL), [
        Outbound("<b>Stalled:</b> 2027 winter uniforms"),
        Outbound("Still there?", options=(Option("nudge snooze 7", "Snooze a week"),)),
        Outbound("<b>Overdue:</b> INV-7"),
    ])
    posts = slack.fake.calls("chat.postMessage")
    # Slack allows ~1 post/s per channel: text runs up to a message with buttons share a post
    assert ids == [p.response["ts"] for p in posts] and len(ids) == 2
    assert [p.params["channel"] for p in posts] == [CHANNEL, CHANNEL]
    first, second = (p.params for p in posts)
    assert first["text"] == "*Stalled:* 2027 winter uniforms\n\nStill there?"
    assert [b["type"] for b in first["blocks"]] == ["section", "section", "actions"]
    assert first["blocks"][-1]["elements"][0]["value"] == "nudge snooze 7"
    assert second["text"] == "*Overdue:* INV-7"
    assert posts[0].token == "xoxb-test-token"


async def test_deliver_to_a_user_opens_the_dm_and_uploads_files(slack: SlackClient) -> None:
    data = b"PK\x03\x04 a docx file" * 100
    ids = await slack.front.deliver(Target(TEAM_ID, "user", "U0REP1"), [
        Outbound("Your proposal is ready.", private=True, attachments=(
            Attachment("proposal.docx", data,
                       "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
                       "Proposal — Daqing"),)),
    ])
    [opened] = slack.fake.calls("conversations.open")
    assert opened.params["users"] == "U0REP1"
    [post] = slack.fake.calls("chat.postMessage")
    assert post.params["channel"] == "D0REP1"
    [url] = slack.fake.calls("files.getUploadURLExternal")
    assert url.params["filename"] == "proposal.docx" and int(url.params["length"]) == len(data)
    [upload] = slack.fake.calls("upload")
    assert upload.files[upload.params["file_id"]] == data
    [done] = slack.fake.calls("files.completeUploadExternal")
    assert done.params["channel_id"] == "D0REP1"
    assert done.params["files"][0]["title"] == "Proposal — Daqing"
    assert ids == [post.response["ts"], upload.params["file_id"]]


async def test_private_messages_are_never_posted_to_a_channel(slack: SlackClient) -> None:
    with pytest.raises(DeliveryError) as caught:
        await slack.front.deliver(Target(TEAM_ID, "channel", CHANNEL), [
            Outbound("team news"), Outbound("Liu Qiang's daughter…", private=True)])
    assert caught.value.permanent
    assert slack.fake.calls() == []


@pytest.mark.parametrize("error", ["channel_not_found", "not_in_channel", "is_archived",
                                   "account_inactive"])
async def test_errors_that_cannot_heal_are_permanent(slack: SlackClient, error: str) -> None:
    slack.fake.error_next("chat.postMessage", error)
    with pytest.raises(DeliveryError) as caught:
        await slack.front.deliver(Target(TEAM_ID, "channel", CHANNEL), [Outbound("x")])
    assert caught.value.permanent and caught.value.reason == error
    assert caught.value.retry_after is None


async def test_an_archived_channel_is_permanent_without_scripting(slack: SlackClient) -> None:
    slack.fake.add_channel("C0OLD", "old", is_archived=True)
    with pytest.raises(DeliveryError) as caught:
        await slack.front.deliver(Target(TEAM_ID, "channel", "C0OLD"), [Outbound("x")])
    assert (caught.value.reason, caught.value.permanent) == ("is_archived", True)


async def test_rate_limit_beyond_the_retries_says_when_to_come_back(slack: SlackClient) -> None:
    slack.fake.fail_next(4, status=429, retry_after=0, method="chat.postMessage")
    with pytest.raises(DeliveryError) as caught:
        await slack.front.deliver(Target(TEAM_ID, "channel", CHANNEL), [Outbound("x")])
    assert caught.value.reason == "ratelimited" and caught.value.retry_after == 0.0
    assert not caught.value.permanent
    assert [c.status for c in slack.fake.calls("chat.postMessage")] == [429] * 4


async def test_rate_limited_once_is_delivered_once(slack: SlackClient) -> None:
    slack.fake.fail_next(1, status=429, retry_after=0)
    ids = await slack.front.deliver(Target(TEAM_ID, "channel", CHANNEL), [Outbound("x")])
    posts = slack.fake.calls("chat.postMessage")
    assert [c.status for c in posts] == [429, 200] and len(ids) == 1


async def test_a_transient_error_is_not_permanent(slack: SlackClient) -> None:
    slack.fake.error_next("chat.postMessage", "fatal_error")
    with pytest.raises(DeliveryError) as caught:
        await slack.front.deliver(Target(TEAM_ID, "channel", CHANNEL), [Outbound("x")])
    assert not caught.value.permanent and caught.value.retry_after is None


async def test_a_long_digest_is_split_and_nothing_rejected(slack: SlackClient) -> None:
    lines = [f"• Opportunity {n} &amp; co — stalled for {n} days" for n in range(400)]
    await slack.front.deliver(Target(TEAM_ID, "channel", CHANNEL), [Outbound("\n".join(lines))])
    posts = slack.fake.calls("chat.postMessage")
    sections = [b["text"]["text"] for p in posts for b in p.params["blocks"]]
    assert len(sections) > 1 and all(len(s) <= 3000 for s in sections)
    assert all(len(p.params["blocks"]) <= 50 for p in posts)
    shown = "\n".join(plain(s) for s in sections)
    assert shown == "\n".join(plain(line) for line in lines)


async def test_a_button_under_a_channel_post_answers_in_the_dm_and_closes_the_post(
        slack: SlackClient) -> None:
    await slack.front.deliver(Target(TEAM_ID, "channel", CHANNEL), [
        Outbound("<b>Stalled:</b> 2027 winter uniforms", options=(Option("/help", "Help"),))])
    [nudge] = slack.fake.calls("chat.postMessage")
    rep = slack.user()
    await rep.click(nudge, value="/help")
    [update] = slack.fake.calls("chat.update")
    assert update.params["channel"] == CHANNEL
    assert update.params["blocks"][-1]["elements"][0]["text"] == "✓ *Help*"
    answers = slack.fake.calls("chat.postMessage")[1:]  # the help, in one part or more
    assert answers and {a.params["channel"] for a in answers} == {rep.dm}
    assert "What I can do" in plain(answers[0].params["text"])
    posted = len(slack.fake.calls("chat.postMessage"))
    await rep.click(nudge, value="/help")  # clicked again (or by a colleague): nothing more
    assert len(slack.fake.calls("chat.postMessage")) == posted


async def test_a_choice_in_an_ephemeral_answer_is_answered_ephemerally(
        slack: SlackClient) -> None:
    from tests.fakes.slack_api import Call

    rep = slack.user()
    note = Call("chat.postEphemeral", {"channel": CHANNEL, "text": "Which one?", "blocks": [
        {"type": "actions", "block_id": "sc_options", "elements": [
            {"type": "button", "action_id": "sc_answer_0", "value": "/help",
             "text": {"type": "plain_text", "text": "Help"}}]}]}, response={"ts": "1.5"})
    block = note.params["blocks"][0]
    await slack.action(rep, note, block, block["elements"][0], block["elements"][0],
                       ephemeral=True)
    answers = slack.fake.calls("chat.postEphemeral")  # the help, in one part or more
    assert answers and all(a.params["channel"] == CHANNEL and a.params["user"] == rep.user
                           for a in answers)
    assert "What I can do" in plain(answers[0].params["text"])
    assert not slack.fake.calls("chat.postMessage") and not slack.fake.calls("chat.update")


async def test_a_nudge_pings_its_owner_and_keeps_other_names_escaped(
        slack: SlackClient) -> None:
    from dialogs.messages import Mention

    await slack.front.deliver(Target(TEAM_ID, "channel", CHANNEL), [Outbound(
        "<b>Stalled:</b> Daqing &amp; Co\nOwner: @Li Lei · with @Li &amp; &lt;Wang&gt;"
        " · @Zhang",
        kind="nudge", mentions=(Mention("slack", "U0LILEI", "Li Lei"),
                                Mention("slack", "U0LIW", "Li & <Wang>"),
                                Mention("telegram", "8001", "Zhang")))])
    [post] = slack.fake.calls("chat.postMessage")
    expected = ("*Stalled:* Daqing &amp; Co\nOwner: <@U0LILEI> · with <@U0LIW> · @Zhang")
    assert post.params["text"] == expected  # the notification text pings too
    assert post.params["blocks"][0]["text"]["text"] == expected


async def test_a_name_with_markup_and_no_mention_stays_escaped_text(
        slack: SlackClient) -> None:
    from dialogs.messages import Mention

    await slack.front.deliver(Target(TEAM_ID, "channel", CHANNEL), [Outbound(
        "Owner: @&lt;!channel&gt; &amp; co", mentions=(Mention("slack", "U0X", "Li"),))])
    [post] = slack.fake.calls("chat.postMessage")
    assert post.params["text"] == "Owner: @&lt;!channel&gt; &amp; co"
