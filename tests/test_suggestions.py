"""What the LSP server makes of the model's text, and which part of the file it shows the model."""

from __future__ import annotations

from lsp_server.cleanup import Surroundings, clean, indent_unit
from lsp_server.config import Settings, parse_settings, setting_names
from lsp_server.context import CHARS_PER_TOKEN, ChunkRing, Cursor, clamp_cursor, window


def around(line_before: str, suffix: str = "", unit: str = "    ", multiline: bool = True) -> Surroundings:
    line_after = suffix.split("\n", 1)[0]
    return Surroundings(line_before, line_after, suffix, unit, multiline)


def test_text_that_repeats_the_code_after_the_cursor_is_dropped() -> None:
    suffix = "\n    return total\n"
    text = "total = sum(values)\n    return total\n"
    assert clean(text, around("    ", suffix)) == "total = sum(values)"


def test_a_one_line_suggestion_does_not_repeat_the_rest_of_the_line() -> None:
    assert clean("a, b)", around("print(", ")", multiline=False)) == "a, b"
    assert clean("x + 1]", around("items[", "]\n", multiline=False)) == "x + 1"
    assert clean("name", around("f(", ")", multiline=False)) == "name"


def test_mid_line_suggestions_are_one_line() -> None:
    assert clean("first\nsecond", around("call(", ")", multiline=False)) == "first"


def test_a_multi_line_suggestion_stops_at_the_end_of_its_block() -> None:
    text = "if x:\n        y = 1\n    return y\nprint('outside')"
    assert clean(text, around("    ")) == "if x:\n        y = 1\n    return y"


def test_trailing_whitespace_and_blank_tails_are_removed_and_empty_is_none() -> None:
    assert clean("value = 1   \n\n\n", around("")) == "value = 1"
    assert clean("   \n  ", around("")) is None
    assert clean("", around("")) is None


def test_indentation_follows_the_file() -> None:
    assert clean("if ok:\n    go()", around("\t", unit="\t")) == "if ok:\n\tgo()"
    assert clean("if ok:\n\tgo()", around("", unit="  ")) == "if ok:\n  go()"


def test_a_closing_fence_never_reaches_the_editor() -> None:
    assert clean("x = 1\n```\nprose", around("")) == "x = 1"


def test_indent_unit_is_read_from_the_file() -> None:
    assert indent_unit(["def f():\n", "  return 1\n", "  if x:\n", "    y\n"]) == "  "
    assert indent_unit(["def f():\n", "\treturn 1\n"]) == "\t"
    assert indent_unit(["x = 1\n"]) == "    "


def test_the_window_keeps_its_token_budget_and_its_edges_while_the_user_types() -> None:
    lines = [f"line_{i:03} = {i:03}\n" for i in range(400)]  # 16 characters a line
    view = window(lines, Cursor(150, 4), 280, 70, 32)  # about 980 and 245 characters
    assert view.prefix.endswith("line_149 = 149\nline")
    assert view.suffix.startswith("_150 = 150\nline_151")
    assert view.line_before == "line" and view.line_after == "_150 = 150"
    assert len(view.prefix) <= 280 * CHARS_PER_TOKEN and len(view.suffix) <= 70 * CHARS_PER_TOKEN
    assert view.first_line % 32 == 0
    # typing further down the file moves the start only in whole blocks
    starts = {window(lines, Cursor(n, 3), 280, 70, 32).first_line for n in range(200, 232)}
    assert len(starts) <= 2
    # pressing Enter at the cursor shifts the lines below: the suffix keeps the same content
    cursor_line = "line_150 = 150\n"
    before_enter = window(lines, Cursor(150, len(cursor_line) - 1), 280, 70, 32)
    entered = [*lines[:151], "\n", *lines[151:]]
    after_enter = window(entered, Cursor(151, 0), 280, 70, 32)
    assert after_enter.suffix.split("\n", 1)[1] == before_enter.suffix.split("\n", 1)[1]
    assert after_enter.first_line == before_enter.first_line


def test_positions_past_the_end_are_clamped() -> None:
    lines = ["ab\n", "cd"]
    assert clamp_cursor(lines, 9, 9) == Cursor(1, 2)
    assert clamp_cursor(lines, 0, 99) == Cursor(0, 2)
    assert clamp_cursor([], 3, 3) == Cursor(0, 0)


def test_crlf_documents_give_plain_newlines() -> None:
    view = window(["a = 1\r\n", "b = \r\n", "c = 3\r\n"], Cursor(1, 4), 10, 10, 4)
    assert view.prefix == "a = 1\nb = "
    assert view.suffix == "\nc = 3\n"


def test_the_ring_offers_other_files_only_and_replaces_overlapping_chunks() -> None:
    ring = ChunkRing(size=4)
    other = [f"o{i}\n" for i in range(100)]
    ring.add("file:///a.py", "a.py", other, 10, 16)
    ring.add("file:///a.py", "a.py", other, 12, 16)  # overlaps the first: replaces, does not duplicate
    ring.add("file:///b.py", "b.py", ["b\n"] * 5, 0, 16)
    chunks = ring.neighbours("file:///b.py", 4)
    assert [c["path"] for c in chunks] == ["a.py"]
    assert len(ring.neighbours("file:///c.py", 4)) == 2
    ring.forget("file:///a.py")
    assert ring.neighbours("file:///c.py", 4) == [{"path": "b.py", "text": "b\nb\nb\nb\nb"}]


def test_invalid_settings_fall_back_and_say_why() -> None:
    settings, problems = parse_settings({"maxTokens": 0, "multiline": "sometimes", "debounceMs": 50, "nope": 1})
    assert settings.max_tokens == Settings().max_tokens
    assert settings.multiline == "auto" and settings.debounce_ms == 50
    assert len(problems) == 3 and any("nope" in p for p in problems)
    nested, problems = parse_settings({"ossEdge": {"languages": ["python", "rust"]}})
    assert nested.languages == ["python", "rust"] and not problems
    assert parse_settings("garbage")[1]


def test_setting_names_are_camel_case() -> None:
    names = setting_names()
    assert "modelDir" in names and "timeBudgetMs" in names and "contextTokens" in names
    assert all("_" not in n for n in names)


def test_control_characters_and_undecodable_bytes_are_dropped() -> None:
    assert clean("a\x7fb\x11c\ufffd", around("")) == "abc"
    assert clean("\tx = 1", around("", unit="\t")) == "\tx = 1"


def test_settings_an_editor_keeps_for_itself_are_not_reported() -> None:
    # VS Code sends its whole `ossEdge` section: the server path and the LSP trace come along on every start
    section = {"serverPath": "/usr/local/bin/oss-edge", "trace": {"server": "verbose"}, "maxTokens": 64}
    settings, problems = parse_settings({"ossEdge": section})
    assert settings.max_tokens == 64 and problems == []
    assert parse_settings({"serverpath": "x"})[1] == ["unknown setting 'serverpath'"]
