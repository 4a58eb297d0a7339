"""Neutral markup -> Slack mrkdwn and Block Kit; Slack text -> what the user typed."""

from __future__ import annotations

from typing import Any

import pytest
from markupsafe import Markup, escape

from dialogs.messages import Option, Outbound
from handlers.slack.render import (
    MAX_PARTS,
    SECTION_LIMIT,
    answer_blocks,
    answered,
    from_slack,
    split_text,
    to_mrkdwn,
    to_slack,
)


def t(key: str, **params: object) -> str:
    return {"slack.truncated": f"cut: {params.get('count')}"}.get(key, key)


@pytest.mark.parametrize(("markup", "mrkdwn"), [
    ("<b>Customer:</b> x", "*Customer:* x"),
    ("<i>[1/24]</i> What?", "_[1/24]_ What?"),
    ("run <code>/coach channel</code>", "run `/coach channel`"),
    (str(Markup("<b>Name:</b> {}").format(escape("<!channel> & <@U1> 'q' \"d\""))),
     "*Name:* &lt;!channel&gt; &amp; &lt;@U1&gt; 'q' \"d\""),
    ("<b>教练提示</b>内容", "*教练提示*\u200b内容"),
    ("小结<b>客户</b>", "小结\u200b*客户*"),
    ("A &amp;amp; B", "A &amp;amp; B"),   # an escaped entity stays text
])
def test_markup_to_mrkdwn(markup: str, mrkdwn: str) -> None:
    assert to_mrkdwn(markup) == mrkdwn


@pytest.mark.parametrize(("slack", "typed"), [
    ("Daqing &amp; Co &lt;b&gt;", "Daqing & Co <b>"),
    ("<!channel> hi", "@channel hi"),
    ("<!subteam^S123|@sales> hi", "@@sales hi"),
    ("ask <@U0BOSS|wang>", "ask @wang"),
    ("see <https://dq.cn|our site> or <https://x.cn>", "see our site or https://x.cn"),
    ("in <#C0SALES|sales>", "in #sales"),
    ("  1, 3  ", "1, 3"),
])
def test_slack_text_to_typed(slack: str, typed: str) -> None:
    assert from_slack(slack) == typed


def test_split_keeps_everything_and_cuts_at_lines_never_in_an_entity() -> None:
    text = "\n".join(f"line {n} &amp; more" for n in range(900))
    parts = split_text(text)
    assert len(parts) > 1 and all(len(p) <= SECTION_LIMIT for p in parts)
    assert "\n".join(parts) == text
    unbroken = "x" * 2998 + "&amp;" + "y" * 10
    first, second = split_text(unbroken)
    assert first == "x" * 2998 and second.startswith("&amp;")


def test_long_message_is_split_and_an_enormous_one_truncated_with_a_note() -> None:
    long = Outbound("\n".join("word " * 20 for _ in range(200)))  # ~20,000 characters
    parts = to_slack(long, t)
    assert 5 <= len(parts) <= MAX_PARTS
    assert all(len(p.text) <= SECTION_LIMIT for p in parts)
    huge = Outbound("\n".join("word " * 20 for _ in range(2000)),
                    options=(Option("yes", "Yes"),))
    parts = to_slack(huge, t)
    assert len(parts) == MAX_PARTS
    assert "cut: " in parts[-1].text
    assert parts[-1].blocks[-1]["type"] == "actions"  # buttons still come with the last part


def test_choices_become_buttons_a_select_or_checkboxes() -> None:
    few = Outbound("?", options=tuple(Option(str(n), f"Opt {n}") for n in range(3)),
                   controls=(Option("back", "◀ Back"),))
    blocks = answer_blocks(few, t)
    assert [e["type"] for e in blocks[0]["elements"]] == ["button"] * 3
    assert len({e["action_id"] for e in blocks[0]["elements"]}) == 3  # unique in the block
    assert blocks[1]["elements"][0]["value"] == "back"
    many = Outbound("?", options=tuple(Option(str(n), "L" * 100) for n in range(12)))
    [select] = answer_blocks(many, t)[0]["elements"]
    assert select["type"] == "static_select" and len(select["options"]) == 12
    assert len(select["options"][0]["text"]["text"]) == 75  # Slack's limit, with an ellipsis
    multi = Outbound("?", options=tuple(Option(str(n), f"O{n}") for n in range(8)), multi=True)
    boxes, done = answer_blocks(multi, t)
    assert boxes["elements"][0]["type"] == "checkboxes"
    assert done["elements"][0]["action_id"] == "sc_multi_done"
    lots = Outbound("?", options=tuple(Option(str(n), f"O{n}") for n in range(11)), multi=True)
    assert answer_blocks(lots, t)[0]["elements"][0]["type"] == "multi_static_select"


def test_labels_are_plain_text_so_nothing_in_them_is_markup() -> None:
    blocks = answer_blocks(Outbound("?", options=(Option("a", "A &amp; <b>B</b>"),)), t)
    assert blocks[0]["elements"][0]["text"] == {"type": "plain_text", "text": "A & B",
                                                "emoji": True}


def test_answered_drops_the_buttons_and_shows_the_choice_escaped() -> None:
    blocks: list[dict[str, Any]] = [{"type": "section", "text": {"type": "mrkdwn", "text": "Q"}},
              {"type": "actions", "elements": []}]
    assert answered(blocks, "<!here> & co") == [
        blocks[0], {"type": "context", "elements": [
            {"type": "mrkdwn", "text": "✓ *&lt;!here&gt; &amp; co*"}]}]
