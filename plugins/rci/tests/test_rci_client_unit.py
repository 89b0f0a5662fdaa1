"""The client's line core and the ``cellbench rci`` options that need no server."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from cellbench_rci.client import ReplyReader, encode_command, tls_context

runner = CliRunner()


def read(chunks: list[bytes]) -> tuple[list[str], list[str]]:
    replies: list[str] = []
    pushes: list[str] = []
    reader = ReplyReader(replies.append, pushes.append)
    for chunk in chunks:
        reader.feed(chunk)
    return replies, pushes


def test_lines_split_anywhere_are_joined_and_sorted_into_replies_and_pushes() -> None:
    stream = b"OK PONG\r\n*SAMPLE 1 7 3 2 3.7 1.25 25 0 1 0.001\nERR 30 channel 9: none\nOK\n"
    whole = read([stream])
    assert whole == (["OK PONG", "ERR 30 channel 9: none", "OK"],
                     ["*SAMPLE 1 7 3 2 3.7 1.25 25 0 1 0.001"])
    for size in (1, 2, 5, 13):
        assert read([stream[i:i + size] for i in range(0, len(stream), size)]) == whole


def test_an_unfinished_line_waits_for_its_end() -> None:
    assert read([b"OK 1,running", b",17"]) == ([], [])
    assert read([b"OK 1,running", b",17\n"]) == (["OK 1,running,17"], [])


def test_a_server_line_without_end_beyond_the_limit_breaks_the_connection(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("cellbench_rci.client.MAX_REPLY_BYTES", 16)
    with pytest.raises(ConnectionError, match="over 16 bytes"):
        read([b"OK " + b"x" * 10, b"y" * 10])


@pytest.mark.parametrize("line", ["STATE? 1\nSTOP 1", "START 1 plän", "PING\r", ""])
def test_only_one_line_of_printable_ascii_is_sent(line: str) -> None:
    if line:
        with pytest.raises(ValueError, match="only printable ASCII on one line"):
            encode_command(line)
    else:
        assert encode_command(line) == b"\n"  # the server answers ERR 10


def test_tls_context_names_the_file_it_cannot_use(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"CA certificate .*missing\.pem: cannot load it"):
        tls_context(tmp_path / "missing.pem")
    (tmp_path / "ca.pem").write_text("not a certificate\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"CA certificate .*ca\.pem: cannot load it"):
        tls_context(tmp_path / "ca.pem")
    with pytest.raises(ValueError, match=r"client certificate .*c\.pem with key .*k\.pem"):
        tls_context(None, tmp_path / "c.pem", tmp_path / "k.pem")
    with pytest.raises(ValueError, match=r"client key .*k\.pem: needs the client certificate"):
        tls_context(None, None, tmp_path / "k.pem")


def test_help_teaches_with_examples(app: typer.Typer) -> None:
    result = runner.invoke(app, ["rci", "--help"])
    assert result.exit_code == 0
    for example in ("cellbench rci STATE? ALL", "cellbench rci START 3 cc-cv",
                    "CELLBENCH_RCI_TOKEN", "--tls-ca"):
        assert example in result.output


def test_certificates_without_tls_are_refused(app: typer.Typer, tmp_path: Path) -> None:
    result = runner.invoke(app, ["rci", "--cert", str(tmp_path / "c.pem"), "PING"])
    assert result.exit_code == 2
    assert "--cert and --key need --tls-ca" in result.output


def test_an_unreadable_ca_file_is_named(app: typer.Typer, tmp_path: Path) -> None:
    result = runner.invoke(app, ["rci", "--tls-ca", str(tmp_path / "ca.pem"), "PING"])
    assert result.exit_code == 2
    assert "CA certificate" in result.output and "ca.pem: cannot load it" in result.output


def test_a_refused_connection_exits_2_naming_the_address(app: typer.Typer) -> None:
    with socket.socket() as sock:  # a port nobody listens on: bound, never listening
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        result = runner.invoke(app, ["rci", "--port", str(port), "PING"])
    assert result.exit_code == 2
    assert f"cannot connect to the rci server at 127.0.0.1:{port}" in result.output


def test_options_after_the_command_belong_to_the_command(app: typer.Typer) -> None:
    """``cellbench rci HELP --port`` sends ``HELP --port``; it does not read an option."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        result = runner.invoke(app, ["rci", "--port", str(port), "HELP", "--port", "1"])
    assert "cannot connect" in result.output and f":{port}" in result.output


def test_cli_reference_is_current(tmp_path: Path) -> None:
    """docs/rci-cli.md is generated from the command's own help."""
    output = tmp_path / "rci-cli.md"
    subprocess.run([sys.executable, "-m", "typer", "cellbench_rci.cli", "utils", "docs",
                    "--name", "cellbench rci", "--output", str(output)],
                   check=True, capture_output=True)
    docs = Path(__file__).parents[3] / "docs" / "rci-cli.md"
    assert docs.read_text(encoding="utf-8") == output.read_text(encoding="utf-8"), (
        "docs/rci-cli.md is out of date: run `uv run python -m typer cellbench_rci.cli utils "
        "docs --name 'cellbench rci' --output docs/rci-cli.md`")
