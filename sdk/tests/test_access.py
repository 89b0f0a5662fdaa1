"""The loopback rule and token files interfaces share."""

from pathlib import Path

import pytest

from cellbench_sdk.access import is_loopback, read_token_file


@pytest.mark.parametrize(("host", "loopback"), [
    ("127.0.0.1", True), ("127.5.0.1", True), ("::1", True), ("localhost", True),
    ("0.0.0.0", False), ("::", False), ("192.168.1.7", False), ("lab-pc", False)])
def test_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_token_file(tmp_path: Path) -> None:
    path = tmp_path / "tokens.txt"
    path.write_text("# the lab\nabc123 operator  # Anna\n\nxyz789 Viewer\n", encoding="utf-8")
    assert read_token_file(path) == {"abc123": "operator", "xyz789": "viewer"}
    path.write_text("abc123 operator\nxyz789 admin\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"tokens.txt:2: expected '<token> viewer'"):
        read_token_file(path)
