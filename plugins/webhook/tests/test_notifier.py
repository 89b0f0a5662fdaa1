"""The conformance checks of cellbench-sdk for a notifier, run against webhook."""

from typing import Any, ClassVar

from cellbench_sdk.testing import NotifierContract


class TestWebhookNotifier(NotifierContract):
    """Every check of a notifier, once per case of settings, against what the descriptor
    builds. The classes' attributes and hooks: docs/plugins.md of cellbench."""

    # The module the entry point names, and the descriptor's name.
    plugin = "cellbench_webhook.plugin"
    name = "webhook"
    # Settings to check with, by a name that shows in the test ids.
    cases: ClassVar[dict[str, dict[str, Any]]] = {"defaults": {}, "errors": {"level": "ERROR"}}

    # For a notifier that sends somewhere: run a stand-in of that service on loopback (an SMTP
    # server, a broker) in peer(), and check on leaving it what reached it:
    #
    #     @contextlib.asynccontextmanager
    #     async def peer(self, settings):
    #         async with MyServer() as server:
    #             yield {**settings, "port": server.port}
    #         assert server.received  # the check's events arrived
