"""Central databases on each backend (a SQLite file, and fresh databases on the PostgreSQL and
MariaDB servers on loopback), a TCP proxy that plays a server going away, and a private
PostgreSQL server that a test may crash and start again. The station
database (``bench``) and the comparison of both sides (``digest``) come from the workspace's
conftest.py.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NoReturn

import pytest
import sqlalchemy as sa


@pytest.fixture
def central_url(database_url: str) -> str:
    """A fresh, empty central database on each backend (parametrise ``database_url``
    indirectly to choose the backends)."""
    return database_url


class Proxy:
    """A TCP proxy on loopback to a server: :meth:`stop` is the server going away mid-transfer
    (every connection cut, nothing listening), :meth:`start` its return on the same port."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = 0
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()

    def start(self) -> None:
        """Listen (on the same port as before, if started before) and forward connections."""
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen()
        self.port = listener.getsockname()[1]
        with self._lock:
            self._sockets.append(listener)
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def stop(self) -> None:
        """Cut every connection and stop listening."""
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            with contextlib.suppress(OSError):  # a listener, or a connection closed already
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
                server = socket.create_connection(self.target)
            except OSError:
                return
            with self._lock:
                self._sockets += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass  # cut by stop()
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


@pytest.fixture
def proxied() -> Iterator[Callable[[str], tuple[Proxy, str]]]:
    """``proxied(url) -> (proxy, url through the proxy)``; every proxy stops afterwards."""
    proxies: list[Proxy] = []

    def make(url: str) -> tuple[Proxy, str]:
        parsed = sa.make_url(url)
        proxy = Proxy(parsed.host or "127.0.0.1", parsed.port or 5432)
        proxy.start()
        proxies.append(proxy)
        return proxy, parsed.set(host="127.0.0.1", port=proxy.port).render_as_string(
            hide_password=False)

    yield make
    for proxy in proxies:
        proxy.stop()


#: Where the PostgreSQL server programs are (Debian's layout); CELLBENCH_TEST_PG_BIN names
#: another folder.
PG_BIN = ("CELLBENCH_TEST_PG_BIN", "/usr/lib/postgresql/15/bin")


class PrivatePostgres:
    """A PostgreSQL server of a test's own on a free loopback port, which the test may stop
    (as by a crash: ``pg_ctl stop -m immediate``) and start again on the same port."""

    def __init__(self, bin_dir: Path, data: Path, port: int, user: list[str]) -> None:
        self._bin, self._data, self._user = bin_dir, data, user
        self.port = port
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"

    def _pg_ctl(self, *args: str) -> None:
        subprocess.run([*self._user, str(self._bin / "pg_ctl"), "-D", str(self._data), "-s",
                        *args], check=True, capture_output=True, timeout=60)

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        options = (f"-p {self.port} -c listen_addresses=127.0.0.1 "
                   f"-c unix_socket_directories='{self._data}' -c fsync=off")
        self._pg_ctl("-w", "-l", str(self._data / "server.log"), "-o", options, "start")

    def crash(self) -> None:
        """Stop the server at once, as a crash would (it recovers from its WAL at start)."""
        self._pg_ctl("-m", "immediate", "stop")


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    """A running :class:`PrivatePostgres`, removed afterwards. Skipped (failed under CI) where
    the server programs are missing or refuse to run."""
    variable, default = PG_BIN
    bin_dir = Path(os.environ.get(variable, default))

    def unavailable(reason: str) -> NoReturn:
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)

    if not (bin_dir / "initdb").is_file():
        unavailable(f"no PostgreSQL server programs in {bin_dir} ({variable})")
    # initdb refuses to run as root: the server then runs as the postgres user.
    user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    # Not below pytest's temporary folder, which only root may enter.
    data = Path(tempfile.mkdtemp(prefix="cellbench-postgres-")) / "data"
    data.parent.chmod(0o777)
    try:
        subprocess.run([*user, str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres",
                        "--auth=trust", "-E", "UTF8", "--no-sync"], check=True,
                       capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.CalledProcessError) as err:
        unavailable(f"initdb failed: {getattr(err, 'stderr', '') or err}")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = PrivatePostgres(bin_dir, data, port, user)
    server.start()
    try:
        yield server
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):
            server.crash()
        shutil.rmtree(data.parent, ignore_errors=True)
