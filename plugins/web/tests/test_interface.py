"""The SDK's interface checks against the web interface, its settings, and its refusal to
serve beyond loopback without tokens."""

import asyncio
import json
import ssl
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest
import trustme
from pydantic import ValidationError
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Origin

from cellbench_sdk.control import StationControl
from cellbench_sdk.testing import InterfaceContract
from cellbench_sdk.testing.station import station_control
from cellbench_web.interface import WebInterface
from cellbench_web.settings import WebSettings


class TestWebInterface(InterfaceContract):
    """Every check of an interface, against the web interface of the kit's station."""

    plugin = "cellbench_web.plugin"
    name = "web"
    cases: ClassVar[dict[str, dict[str, Any]]] = {
        "loopback": {"listen": "127.0.0.1:0"},
        "tokens": {"listen": "127.0.0.1:0", "tokens": {"a-viewer-token-0123": "viewer"}}}

    async def exercise(self, interface: Any, control: StationControl) -> None:
        host, port = interface.address
        headers = {"Authorization": "Bearer a-viewer-token-0123"} \
            if interface.settings.tokens else {}
        async with httpx.AsyncClient(base_url=f"http://{host}:{port}", timeout=30) as http:
            channels = (await http.get("/api/channels", headers=headers)).json()
        assert [c["number"] for c in channels] == control.channel_numbers()


@pytest.mark.parametrize(("settings", "error"), [
    ({"listen": "8080"}, "expected host:port"),
    ({"listen": "127.0.0.1:99999"}, "expected host:port"),
    ({"tokens": {"short": "operator"}}, "at least 16"),
    ({"tokens": {"a-long-enough-token": "admin"}}, r"a role \(viewer or operator\)"),
    ({"tls_cert": "cert.pem"}, "tls_cert and tls_key go together"),
    ({"session_lifetime": 60}, "a duration with its unit"),
    ({"listen_on": "127.0.0.1:0"}, "listen_on"),
])
def test_bad_settings_name_the_field(settings: dict[str, Any], error: str) -> None:
    with pytest.raises(ValidationError, match=error):
        WebSettings.model_validate(settings)


def test_beyond_loopback_needs_tokens() -> None:
    async def main() -> None:
        async with station_control(1) as control:
            interface = WebInterface(WebSettings(listen="0.0.0.0:0"))
            with pytest.raises(ValueError, match="reachable from other machines: set tokens"):
                await interface.start(control)
            await interface.stop()
            served = WebInterface(WebSettings(listen="0.0.0.0:0", tokens={
                "operator-token-0123456789": "operator"}))
            assert (await served.start(control)).startswith("web http://0.0.0.0:")
            await served.stop()

    asyncio.run(main())


def test_a_taken_port_is_an_error_naming_it() -> None:
    async def main() -> None:
        async with station_control(1) as control:
            first = WebInterface(WebSettings(listen="127.0.0.1:0"))
            await first.start(control)
            assert first.address is not None
            port = first.address[1]
            second = WebInterface(WebSettings(listen=f"127.0.0.1:{port}"))
            with pytest.raises(OSError, match=f"web: cannot listen on 127.0.0.1:{port}"):
                await second.start(control)
            await first.stop()

    asyncio.run(main())


def test_tls_and_secure_cookies(tmp_path: Path) -> None:
    ca = trustme.CA()
    ca.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(tmp_path / "s.pem")
    ca.cert_pem.write_to_path(tmp_path / "ca.pem")
    token = "operator-token-0123456789"

    async def main() -> None:
        async with station_control(1) as control:
            control.base_dir = tmp_path  # where the settings' relative paths are
            interface = WebInterface(WebSettings(
                listen="127.0.0.1:0", tls_cert="s.pem", tls_key="s.pem",
                tokens={token: "operator"}))
            served = await interface.start(control)
            assert served.startswith("web https://127.0.0.1:")
            host, port = interface.address or ("", 0)
            async with httpx.AsyncClient(base_url=f"https://{host}:{port}", timeout=30,
                                         verify=ssl.create_default_context(
                                             cafile=tmp_path / "ca.pem")) as http:
                login = await http.post("/login", data={"token": token},
                                        follow_redirects=False)
                assert "secure" in login.headers["set-cookie"].lower()
                assert (await http.get("/api/station")).json()["role"] == "operator"
            async with httpx.AsyncClient(base_url=f"http://{host}:{port}", timeout=30) as plain:
                with pytest.raises(httpx.HTTPError):
                    await plain.get("/api/station")
            await interface.stop()

    asyncio.run(main())


def test_live_clients_are_bounded_and_same_origin() -> None:
    async def main() -> None:
        async with station_control(2) as control:
            interface = WebInterface(WebSettings(listen="127.0.0.1:0", max_clients=1))
            await interface.start(control)
            host, port = interface.address or ("", 0)
            url = f"ws://{host}:{port}/api/live"
            async with connect(url) as first:
                hello = json.loads(await first.recv())
                assert [c["number"] for c in hello["channels"]] == [1, 2]
                async with connect(url) as second:
                    with pytest.raises(ConnectionClosed) as closed:
                        await second.recv()
                    assert closed.value.rcvd is not None
                    assert closed.value.rcvd.code == 1013
            async with connect(url, origin=Origin("http://elsewhere.example")) as foreign:
                with pytest.raises(ConnectionClosed) as closed:
                    await foreign.recv()
                assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
                assert closed.value.rcvd.reason == "connect from this server's own pages"
            async with connect(url + "?channels=3") as unknown:
                with pytest.raises(ConnectionClosed) as closed:
                    await unknown.recv()
                assert closed.value.rcvd is not None
                assert closed.value.rcvd.reason == "no channel 3"
            await interface.stop()

    asyncio.run(main())
