"""The SDK's interface checks against the web interface, its settings, and its refusal to
serve beyond loopback without tokens."""

import asyncio
from typing import Any, ClassVar

import httpx
import pytest
from pydantic import ValidationError

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
    ({"tokens": {"a-long-enough-token": "admin"}}, "'viewer' or 'operator'"),
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
