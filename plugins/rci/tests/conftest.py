"""Stations for the rci tests: ``cellbench serve`` subprocesses of simulated channels (virtual
clock, 20 times faster than the wall) with an rci interface on a free loopback port, one per
test module and kind: plain, with TLS client certificates, with tokens."""

from __future__ import annotations

import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme

from cellbench_rci.client import RciClient

RESTING = "name: resting\nsteps:\n  - Rest for 1000 hours\n"
CHANNELS = 4
PATIENCE_S = 60.0


@dataclass(frozen=True)
class Station:
    """A serving station: its rci port, channel count and the folder of its files."""

    port: int
    channels: int
    files: Path

    def wait_until(self, rci: RciClient, command: str,
                   predicate: Callable[[list[list[str]]], bool]) -> None:
        """Repeat ``command`` until its records satisfy ``predicate``."""
        deadline = time.monotonic() + PATIENCE_S
        while not predicate(records := rci.command(command).records):
            assert time.monotonic() < deadline, f"{command}: {records}"
            time.sleep(0.05)


def _station(folder: Path, settings: str,
             serve: Callable[[Path], tuple[subprocess.Popen[str], str]]) -> Iterator[Station]:
    (folder / "plans").mkdir()
    (folder / "plans" / "resting.yaml").write_text(RESTING, encoding="utf-8")
    station = folder / "station.toml"
    station.write_text(f"""\
[station]
name = "rci-test"
database = "sqlite:///{folder / 'station.db'}"
sample_period = "1 s"
clock = "virtual"
speed = 20
plans_dir = "plans"

[[channels]]
driver = "sim"
[channels.settings]
count = {CHANNELS}

[[interfaces]]
kind = "rci"
[interfaces.settings]
tcp = "127.0.0.1:0"
{settings}""", encoding="utf-8")
    process, ready = serve(station)
    # The station logs every control action: keep its stderr read so it never blocks on it.
    assert process.stderr is not None
    threading.Thread(target=process.stderr.read, daemon=True).start()
    match = re.search(r"\brci tcp 127\.0\.0\.1:(\d+)", ready)
    try:
        assert match, ready
        yield Station(int(match[1]), CHANNELS, folder)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=PATIENCE_S)


@pytest.fixture(scope="module")
def station(tmp_path_factory: pytest.TempPathFactory,
            serve: Callable[[Path], tuple[subprocess.Popen[str], str]]) -> Iterator[Station]:
    """A station whose loopback clients are all operators."""
    yield from _station(tmp_path_factory.mktemp("rci"), "", serve)


@pytest.fixture(scope="module")
def tls_station(tmp_path_factory: pytest.TempPathFactory,
                serve: Callable[[Path], tuple[subprocess.Popen[str], str]]
                ) -> Iterator[Station]:
    """A station serving TLS that requires a client certificate signed by ``ca.pem``; the
    certificate ``client.pem`` (CN "lims") is an operator."""
    folder = tmp_path_factory.mktemp("rci-tls")
    ca = trustme.CA()
    ca.cert_pem.write_to_path(folder / "ca.pem")
    server = ca.issue_cert("127.0.0.1", "localhost")
    server.cert_chain_pems[0].write_to_path(folder / "server.pem")
    server.private_key_pem.write_to_path(folder / "server.key")
    client = ca.issue_cert("lims@example.org", common_name="lims")
    client.cert_chain_pems[0].write_to_path(folder / "client.pem")
    client.private_key_pem.write_to_path(folder / "client.key")
    yield from _station(folder, f"""\
tls_cert = "{folder / 'server.pem'}"
tls_key = "{folder / 'server.key'}"
tls_client_ca = "{folder / 'ca.pem'}"
cert_roles = {{ "lims" = "operator" }}
""", serve)


@pytest.fixture(scope="module")
def token_station(tmp_path_factory: pytest.TempPathFactory,
                  serve: Callable[[Path], tuple[subprocess.Popen[str], str]]
                  ) -> Iterator[Station]:
    """A station with an operator token ``operator-token-1`` and a viewer token
    ``viewer-token-1``."""
    yield from _station(tmp_path_factory.mktemp("rci-tokens"), """\
tokens = { "operator-token-1" = "operator", "viewer-token-1" = "viewer" }
""", serve)
