"""A loopback stand-in for Kubeflow's ingress: Istio's gateway routing by Host, behind an oidc-authservice check.

What a client meets outside a Kubeflow <= 1.8 cluster (Istio's ingress gateway behind Dex and oidc-authservice,
whose session cookie is ``authservice_session``): every request without the session cookie is redirected (302)
to the Dex login page, ``/dex/auth?...`` (an expired session looks the same, not a 401); a request with it is
routed by its Host header, ``NAME.NAMESPACE.example.com``, to that InferenceService's predictor, and an unknown
host gets Istio's 404. The cookie is not passed on, as authservice does not.
"""

from __future__ import annotations

import http.cookies
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import httpx

SESSION_COOKIE = "authservice_session"
LOGIN_PATH = "/dex/auth?client_id=kubeflow-oidc-authservice&redirect_uri=%2Flogin%2Foidc&response_type=code"
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "host", "cookie",
               "content-length"}


class Gateway:
    """The proxy on 127.0.0.1:PORT (``url``); ``route(host, upstream)`` adds an InferenceService."""

    def __init__(self, session: str) -> None:
        self.session = session
        self.routes: dict[str, str] = {}
        self.requests: list[tuple[str, str, int]] = []  # (host, path, status) of every request, for the tests
        gateway = self

        class Handler(_Handler):
            owner: ClassVar[Gateway] = gateway

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._upstream = httpx.Client(timeout=120.0, limits=httpx.Limits(max_connections=64))
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def route(self, host: str, upstream: str) -> None:
        self.routes[host] = upstream.rstrip("/")

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._upstream.close()


class _Handler(BaseHTTPRequestHandler):
    owner: ClassVar[Gateway]
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the stdlib's signature
        pass

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        self._serve()

    def do_POST(self) -> None:  # noqa: N802
        self._serve()

    def _serve(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        host = (self.headers.get("host") or "").split(":")[0]
        cookies = http.cookies.SimpleCookie(self.headers.get("cookie") or "")
        session = cookies.get(SESSION_COOKIE)
        if session is None or session.value != self.owner.session:
            self._answer(302, b"", {"location": LOGIN_PATH})
        elif host not in self.owner.routes:
            self._answer(404, b"", {})
        else:
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
            upstream = self.owner._upstream.request(
                self.command, self.owner.routes[host] + self.path, content=body, headers=headers
            )
            out = {k: v for k, v in upstream.headers.items() if k.lower() not in _HOP_BY_HOP | {"content-encoding"}}
            self._answer(upstream.status_code, upstream.content, out)
        self.owner.requests.append((host, self.path, self._status))

    def _answer(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self._status = status
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
