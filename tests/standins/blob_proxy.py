"""A small HTTPS proxy (the ``CONNECT`` method, what ``HTTPS_PROXY`` clients use) that routes the emulated
cloud's blob hosts, ``<account>.blob.<storage suffix>:443``, to Azurite: the SDK's own host-style storage URLs
then reach the emulator unchanged. Set ``HTTPS_PROXY=http://127.0.0.1:<port>`` with
``NO_PROXY=127.0.0.1,localhost`` so every other stand-in is reached directly.

The tunnel is terminated here with a certificate for ``*.blob.<suffix>`` from the test CA (clients trust it
through ``REQUESTS_CA_BUNDLE``) and each request is forwarded to Azurite over HTTP with its ``Host`` header, so
the proxy sees every storage request: ``requests`` lists ``(method, host, path, status)``; ``puts()`` counts the
writes (the uploaded blobs and blocks). Faults: ``drop_writes(n)`` closes the connection instead of forwarding
the next ``n`` PUTs (an upload interrupted by the network); ``stall_writes()`` holds every PUT until
``release_writes()`` (a slow upload to interrupt; ``stalled`` is set once one waits). Any other host is refused
with 403.
"""

from __future__ import annotations

import http.client
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

from cvtriton_standins.http_servers import serve_in_thread, stop_server
from cvtriton_standins.test_ca import TestCA

HOP_BY_HOP = {"connection", "proxy-connection", "keep-alive", "proxy-authorization", "transfer-encoding", "te",
              "upgrade"}


class BlobProxy:
    def __init__(self, ca: TestCA, storage_suffix: str, azurite: tuple[str, int]) -> None:
        self.suffix = storage_suffix
        self.azurite = azurite
        cert = ca.server_cert("blob-proxy", (f"*.blob.{storage_suffix}",))
        self._tls = cert.server_context()
        self.requests: list[tuple[str, str, str, int]] = []
        self._drop = 0
        self._lock = threading.Lock()
        self._flowing = threading.Event()
        self._flowing.set()
        self.stalled = threading.Event()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None, "start() first"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def env(self) -> dict[str, str]:
        return {"HTTPS_PROXY": self.url, "https_proxy": self.url, "NO_PROXY": "127.0.0.1,localhost",
                "no_proxy": "127.0.0.1,localhost"}

    def start(self) -> "BlobProxy":
        handler = type("Handler", (_ConnectHandler,), {"proxy": self})
        self._server = serve_in_thread(handler, "blob-proxy")
        return self

    def stop(self) -> None:
        stop_server(self._server)
        self._server = None

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self._drop = 0
        self.stalled.clear()
        self._flowing.set()

    def drop_writes(self, count: int) -> None:
        with self._lock:
            self._drop += count

    def stall_writes(self) -> None:
        self._flowing.clear()

    def release_writes(self) -> None:
        self._flowing.set()

    def puts(self, where: Callable[[str], bool] = lambda path: True) -> int:
        with self._lock:
            return sum(1 for method, _, path, _ in self.requests if method == "PUT" and where(path))

    def _take_drop(self) -> bool:
        with self._lock:
            if self._drop > 0:
                self._drop -= 1
                return True
            return False

    def routes(self, host: str) -> bool:
        name = host.rsplit(":", 1)[0].lower()
        return name.endswith(f".blob.{self.suffix}") and host.endswith(":443")


class _ConnectHandler(BaseHTTPRequestHandler):
    proxy: BlobProxy
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        pass

    def do_CONNECT(self) -> None:  # noqa: N802
        if not self.proxy.routes(self.path):
            self.send_error(403, f"this proxy routes only *.blob.{self.proxy.suffix}:443")
            return
        self.send_response(200, "Connection established")
        self.end_headers()
        self.wfile.flush()
        try:
            tls = self.proxy._tls.wrap_socket(self.connection, server_side=True)
        except (ssl.SSLError, OSError):
            self.close_connection = True
            return
        try:
            _BlobHandler(tls, self.client_address, self.server, self.proxy)
        except (ssl.SSLError, OSError):
            pass
        self.close_connection = True


class _BlobHandler(BaseHTTPRequestHandler):
    """One tunnel's requests, forwarded to Azurite."""

    protocol_version = "HTTP/1.1"

    def __init__(self, sock, address, server, proxy: BlobProxy) -> None:
        self.proxy = proxy
        super().__init__(sock, address, server)

    def log_message(self, *args) -> None:
        pass

    def _forward(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        host = self.headers.get("Host", "")
        if self.command == "PUT" and not self.proxy._flowing.is_set():
            self.proxy.stalled.set()
            self.proxy._flowing.wait(300)
        if self.command == "PUT" and self.proxy._take_drop():
            with self.proxy._lock:
                self.proxy.requests.append((self.command, host, self.path, 0))
            self.close_connection = True
            self.connection.close()
            return
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        conn = http.client.HTTPConnection(*self.proxy.azurite, timeout=120)
        try:
            conn.request(self.command, self.path, body=body, headers=headers)
            answer = conn.getresponse()
            data = answer.read()
        finally:
            conn.close()
        with self.proxy._lock:
            self.proxy.requests.append((self.command, host, self.path, answer.status))
        self.send_response(answer.status, answer.reason)
        for name, value in answer.getheaders():
            if name.lower() not in HOP_BY_HOP | {"content-length", "server", "date"}:   # ours are sent
                self.send_header(name, value)
        if self.command == "HEAD":
            self.send_header("Content-Length", answer.getheader("Content-Length") or "0")
            self.end_headers()
        else:
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    do_GET = do_PUT = do_HEAD = do_DELETE = do_POST = _forward   # noqa: N815
