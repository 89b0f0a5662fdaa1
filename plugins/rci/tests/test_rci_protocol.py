"""Reply lines: formatting and parsing are inverse, and no line makes the parser fail in any
other way than a ValueError."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cellbench_rci.protocol import ErrorCode, RciError, Reply, err_line, ok_line, parse_reply

#: What a payload may hold: printable ASCII (a reply is one line).
PAYLOAD = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=200)


@given(PAYLOAD)
def test_ok_lines_parse_back_to_their_payload(payload: str) -> None:
    line = ok_line(payload)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    reply = parse_reply(line.decode("ascii").rstrip("\n"))
    assert reply == Reply(payload)


@given(st.sampled_from(ErrorCode), st.text(max_size=200))
def test_err_lines_parse_back_to_code_and_a_one_line_ascii_message(code: ErrorCode,
                                                                   message: str) -> None:
    line = err_line(code, message)
    assert line.isascii() and line.endswith(b"\n") and line.count(b"\n") == 1
    error = parse_reply(line.decode("ascii").rstrip("\n"))
    assert isinstance(error, RciError)
    assert error.code is code
    assert error.message == " ".join(
        "".join(c if c.isascii() and c.isprintable() else " " for c in message).split())


@given(st.text(max_size=300))
def test_any_line_is_a_reply_an_error_or_a_value_error(line: str) -> None:
    try:
        parsed = parse_reply(line)
    except ValueError as err:
        assert "not an rci reply line" in str(err)
    else:
        assert isinstance(parsed, Reply | RciError)


def test_records_and_fields() -> None:
    assert Reply("1,idle,-;2,running,17").records == [["1", "idle", "-"], ["2", "running", "17"]]
    assert Reply("PONG").records == [["PONG"]]
    assert Reply("").records == []


def test_an_unknown_code_is_kept_as_its_number() -> None:
    error = parse_reply("ERR 77 something new")
    assert isinstance(error, RciError)
    assert (error.code, error.message, str(error)) == (77, "something new",
                                                       "ERR 77 something new")
    known = parse_reply("ERR 30 channel 9: no such channel")
    assert isinstance(known, RciError) and known.code is ErrorCode.NO_SUCH_CHANNEL


@pytest.mark.parametrize("line", ["", "ok", "OKAY", "ERR", "ERR x oops", "ERR -1 no",
                                  "*SAMPLE 1 2 3", "PONG"])
def test_lines_that_are_no_replies(line: str) -> None:
    with pytest.raises(ValueError, match="not an rci reply line"):
        parse_reply(line)


def test_error_codes_are_the_documented_table() -> None:
    assert {c.value for c in ErrorCode} == {10, 11, 12, 13, 20, 21, 22, 23, 30, 31, 32, 33, 34,
                                            35, 40, 41, 42, 43, 44, 45, 50, 51, 52, 60, 61, 62,
                                            63, 70, 71, 99}
