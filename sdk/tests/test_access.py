"""The loopback rule, token files and the guard against token guessing interfaces share."""

import logging
from pathlib import Path

import pytest

from cellbench_sdk.access import (
    AuthGuard,
    Token,
    is_loopback,
    read_token_file,
    settings_tokens,
    split_address,
)


@pytest.mark.parametrize(("host", "loopback"), [
    ("127.0.0.1", True), ("127.5.0.1", True), ("127.255.255.254", True), ("::1", True),
    ("[::1]", True), ("localhost", True), ("LOCALHOST", True), ("::ffff:127.0.0.1", True),
    ("0.0.0.0", False), ("::", False), ("[::]", False), ("192.168.1.7", False),
    ("128.0.0.1", False), ("lab-pc", False)])
def test_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


@pytest.mark.parametrize(("text", "address"), [
    ("127.0.0.1:5025", ("127.0.0.1", 5025)), ("[::1]:0", ("::1", 0)),
    ("::1:8080", ("::1", 8080)), ("localhost:1", ("localhost", 1))])
def test_addresses(text: str, address: tuple[str, int]) -> None:
    assert split_address(text) == address


@pytest.mark.parametrize("text", ["5025", "[::1]", "host:port", "h:70000", ":5025", "h:٣"])
def test_bad_addresses_are_named(text: str) -> None:
    with pytest.raises(ValueError, match="expected host:port"):
        split_address(text)


def test_token_file_labels(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "tokens.txt"
    path.write_text("# the lab\nabc123 operator anna  # Anna\n\nxyz789 Viewer\n",
                    encoding="utf-8")
    with caplog.at_level(logging.WARNING):
        assert read_token_file(path) == {"abc123": Token("operator", "anna"),
                                         "xyz789": Token("viewer", "token-4")}
    assert f"{path}:4: a token without a label is shown as 'token-4'" in caplog.text
    assert "xyz789" not in caplog.text
    for text, message in [("abc123 operator\nxyz789 admin x\n", r"tokens.txt:2: expected a "
                           r"role \(viewer or operator\) and a label"),
                          ("abc123\n", "tokens.txt:1: expected"),
                          ("abc123 operator a b\n", "tokens.txt:1: expected"),
                          ("abc123 operator a\nxyz789 viewer a\n", "tokens.txt:2: label 'a' "
                           "is also on line 1"),
                          ("abc123 operator a\nabc123 viewer b\n", "tokens.txt:2: this token "
                           "is also on line 1"),
                          ("abc123 operator abc123\n", "must not be the token itself"),
                          ("abc123 operator a;b\n", "is not a name")]:
        path.write_text(text, encoding="utf-8")
        with pytest.raises(ValueError, match=message):
            read_token_file(path)


def test_settings_tokens() -> None:
    assert settings_tokens({"s3cret": "operator lims", "other": "viewer"}, "web") == {
        "s3cret": Token("operator", "lims"), "other": Token("viewer", "tokens-2")}
    with pytest.raises(ValueError, match=r"web: the token number 2 in tokens: expected a "
                                          r"role") as refused:
        settings_tokens({"other": "viewer", "s3cret": "admin"}, "web")
    assert "s3c" not in str(refused.value)  # no part of a secret in an error


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_guard_slows_down_blocks_and_summarises(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    guard = AuthGuard("rci", window_s=60, max_failures=5, base_delay_s=0.5, max_delay_s=3,
                      clock=clock)
    with caplog.at_level(logging.WARNING, logger="cellbench_sdk.access"):
        delays = [guard.failed("10.0.0.9") for _ in range(5)]
        assert delays == [0.5, 1.0, 2.0, 3.0, 3.0]
        assert guard.blocked("10.0.0.9") == 60.0
        assert guard.blocked("10.0.0.8") == 0.0  # other addresses are not blocked
        clock.now += 59
        assert guard.blocked("10.0.0.9") == pytest.approx(1.0)
        assert len(caplog.records) == 1  # the first failure only, so far
        assert "rci: failed AUTH from 10.0.0.9" in caplog.text
        clock.now += 1
        assert guard.blocked("10.0.0.9") == 0.0  # the window ended: the count is logged
        assert len(caplog.records) == 2
        assert caplog.records[1].getMessage() == "rci: 4 failed AUTH from 10.0.0.9 in the " \
            "last 60 s"
        assert guard.failed("10.0.0.9") == 0.5  # a new window starts afresh
