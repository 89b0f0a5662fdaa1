"""Who may reach the web interface, under attack: wrong tokens are slowed down, then refused
for a while and logged as counts; the files of its settings are named when missing; any
loopback address serves without tokens. A real station's control, served on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import re
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from cellbench_sdk.access import AuthGuard
from cellbench_sdk.testing.station import station_control
from cellbench_web.interface import WebInterface
from cellbench_web.settings import WebSettings

TOKEN = "operator-token-0123456789"
PATIENCE_S = 30.0


@contextlib.asynccontextmanager
async def served_with_token() -> AsyncIterator[httpx.AsyncClient]:
    """A station's web interface on loopback that knows ``TOKEN``, and a client of it."""
    async with station_control(1) as control:
        interface = WebInterface(WebSettings(listen="127.0.0.1:0",
                                             tokens={TOKEN: "operator lims"}))
        await interface.start(control)
        host, port = interface.address or ("", 0)
        try:
            async with httpx.AsyncClient(base_url=f"http://{host}:{port}",
                                         timeout=PATIENCE_S) as http:
                yield http
        finally:
            await interface.stop()


def test_wrong_tokens_are_slowed_down_refused_and_counted(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr("cellbench_web.auth.AuthGuard", functools.partial(
        AuthGuard, base_delay_s=0.01, max_delay_s=0.05, max_failures=4, window_s=3600))

    async def main() -> None:
        async with served_with_token() as http:
            page = await http.post("/login", data={"token": "guess-0"})
            assert page.status_code == 401 and "unknown token" in page.text
            for n in range(1, 4):
                wrong = await http.get("/api/station",
                                       headers={"Authorization": f"Bearer guess-{n}"})
                assert wrong.status_code == 401
                assert wrong.json() == {"error": "unauthenticated",
                                        "message": "unknown token"}
            right = {"Authorization": f"Bearer {TOKEN}"}
            blocked = await http.get("/api/station", headers=right)  # even the right one
            assert blocked.status_code == 429
            assert re.fullmatch(r"too many wrong tokens from 127\.0\.0\.1; try again in "
                                r"[0-9]+ s", blocked.json()["message"])
            assert int(blocked.headers["retry-after"]) > 0
            page = await http.post("/login", data={"token": TOKEN})
            assert page.status_code == 429 and "too many wrong tokens" in page.text

    with caplog.at_level(logging.WARNING):
        asyncio.run(main())
    failures = [r.getMessage() for r in caplog.records if "failed token" in r.getMessage()]
    assert len(failures) == 1 and failures[0].startswith("web: failed token from 127.0.0.1")
    assert "guess" not in caplog.text and TOKEN[:8] not in caplog.text


def test_the_count_of_a_burst_is_logged_when_its_window_ends(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr("cellbench_web.auth.AuthGuard", functools.partial(
        AuthGuard, base_delay_s=0.01, max_delay_s=0.01, window_s=0.4))
    summary = "web: 2 failed token from 127.0.0.1 in the last 0.4 s"

    async def main() -> None:
        async with served_with_token() as http:
            for n in range(3):
                wrong = await http.get("/api/station",
                                       headers={"Authorization": f"Bearer guess-{n}"})
                assert wrong.status_code == 401
            for _ in range(int(PATIENCE_S / 0.05)):  # no request comes any more
                if summary in caplog.text:
                    break
                await asyncio.sleep(0.05)

    with caplog.at_level(logging.WARNING):
        asyncio.run(main())
    assert summary in caplog.text


def test_missing_files_are_named_with_their_setting(tmp_path: Path) -> None:
    async def main() -> None:
        async with station_control(1) as control:
            control.base_dir = tmp_path
            for settings, message in [
                    ({"tls_cert": "s.pem", "tls_key": "s.key"},
                     f"web: tls_cert = 's.pem': no file {tmp_path / 's.pem'}"),
                    ({"token_file": "tokens.txt"},
                     f"web: token_file = 'tokens.txt': no file {tmp_path / 'tokens.txt'}")]:
                interface = WebInterface(WebSettings(listen="127.0.0.1:0", **settings))
                with pytest.raises(ValueError, match=re.escape(message)):
                    await interface.start(control)

    asyncio.run(main())


@pytest.mark.parametrize("host", ["[::1]", "127.0.0.2"])
def test_any_loopback_address_serves_without_tokens(host: str) -> None:
    if host == "[::1]" and not socket.has_ipv6:
        pytest.skip("no IPv6 on this machine")

    async def main() -> None:
        async with station_control(1) as control:
            interface = WebInterface(WebSettings(listen=f"{host}:0"))
            served = await interface.start(control)
            assert served.startswith(f"web http://{host}:")
            _, port = interface.address or ("", 0)
            async with httpx.AsyncClient(base_url=f"http://{host}:{port}",
                                         timeout=PATIENCE_S) as http:
                assert (await http.get("/api/station")).json()["role"] == "operator"
            await interface.stop()

    asyncio.run(main())
