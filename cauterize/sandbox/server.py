"""Serve any ``httpx`` handler (``request -> response``) over a real socket on 127.0.0.1.

The emulators are plain handlers usable with ``httpx.MockTransport``; ``serve`` puts the same
handler behind a ``ThreadingHTTPServer`` on a free port, in a daemon thread, so wire behaviour
(real sockets, headers, keep-alive, retries) is exercised too. Request logging is silenced:
URLs never reach stderr.

    with serve(OpenAIEmulator()) as app:
        client = httpx.Client(base_url=app.url + "/v1")
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Self

import httpx

Handler = Callable[[httpx.Request], httpx.Response]

# Hop-by-hop or recomputed headers that must not be copied from the handler's response.
_SKIP = {"connection", "content-length", "transfer-encoding", "keep-alive", "content-encoding"}


@dataclass
class ServedApp:
    """A handler served on ``url`` until ``close()`` (or the end of a ``with`` block)."""

    url: str
    server: ThreadingHTTPServer = field(repr=False)
    thread: threading.Thread = field(repr=False)

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def serve(
    handler: Handler, host: str = "127.0.0.1", port: int = 0, *, tls: tuple[str, str] | None = None
) -> ServedApp:
    """Start serving ``handler`` on ``host`` (a free port unless ``port`` is given); over HTTPS
    when ``tls`` = (certificate file, key file)."""
    server = ThreadingHTTPServer((host, port), _bridge(handler))
    server.daemon_threads = True
    scheme = "http"
    if tls is not None:
        import ssl

        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*tls)
        server.socket = context.wrap_socket(server.socket, server_side=True)
        scheme = "https"
    thread = threading.Thread(
        target=lambda: server.serve_forever(poll_interval=0.05), name=f"sandbox-{server.server_address[1]}", daemon=True
    )
    thread.start()
    return ServedApp(f"{scheme}://{host}:{server.server_address[1]}", server, thread)


def _bridge(handler: Handler) -> type[BaseHTTPRequestHandler]:
    class Bridge(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # small replies would otherwise wait ~40 ms for a delayed ACK

        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            host, port = self.server.server_address[:2]
            request = httpx.Request(
                self.command, f"http://{host}:{port}{self.path}", headers=list(self.headers.items()), content=body
            )
            try:
                response = handler(request)
                content = response.read()
            except Exception as exc:  # noqa: BLE001  (a crashed handler must answer 500, not hang the client)
                response = httpx.Response(500)
                content = json.dumps(
                    {
                        "error": {
                            "message": f"sandbox handler failed: {type(exc).__name__}",
                            "type": "server_error",
                            "param": None,
                            "code": None,
                        }
                    }
                ).encode()
                response.headers["content-type"] = "application/json"
            self._reply(response, content)

        def _reply(self, response: httpx.Response, content: bytes) -> None:
            self.send_response(response.status_code)
            for name, value in response.headers.multi_items():
                if name.lower() not in _SKIP:
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(content)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(content)

        do_GET = do_POST = do_DELETE = do_PUT = do_PATCH = do_HEAD = _handle

        def log_message(self, format: str, *args: object) -> None:
            return

    return Bridge
