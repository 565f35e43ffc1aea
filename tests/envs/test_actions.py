from regym.envs.actions import MAX_ACTION_CHARS, MAX_REPLY_CHARS, parse_action


def test_bare_command():
    assert parse_action("go north").action == "go north"


def test_react_takes_last_action_line_and_keeps_thought():
    parsed = parse_action("Thought: the key is on the table.\nAction: take key from table")
    assert parsed.action == "take key from table"
    assert parsed.thought == "the key is on the table."


def test_chat_message_json():
    assert parse_action('{"role": "assistant", "content": "Action: open door"}').action == "open door"


def test_action_tag_and_prompt_marker_and_fences():
    assert parse_action("I think <action>look</action>").action == "look"
    assert parse_action("> inventory").action == "inventory"
    assert parse_action("```\ntake apple\n```").action == "take apple"


def test_empty_and_non_text_are_invalid_not_errors():
    for text in ["", "   \n\t", "Action:", None, 42, b"go"]:
        parsed = parse_action(text)
        assert parsed.action is None and parsed.error


def test_control_characters_removed_and_length_capped():
    parsed = parse_action("go\x00 no\x07rth" + "x" * 20_000)
    assert "\x00" not in parsed.action and "\x07" not in parsed.action
    assert len(parsed.action) <= MAX_ACTION_CHARS


def test_reply_over_the_cap_is_refused_unread():
    refused = parse_action("go north" + " " * MAX_REPLY_CHARS)
    assert refused.action is None and f"{MAX_REPLY_CHARS:,}" in refused.error
    assert parse_action("go north".ljust(MAX_REPLY_CHARS)).action == "go north"
