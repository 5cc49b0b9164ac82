"""Stand-ins for the client's tests: a KServe v1 model server, Kubeflow's Dex login chain, and a loopback HTTP server.

Every stand-in is an app ``httpx.Request -> httpx.Response``: the unit tests mount it on ``httpx.MockTransport``,
and ``LoopbackServer`` serves the same app over real HTTP on 127.0.0.1 (for the CLI, the Kubernetes client and the
end-to-end login). The v1 model computes its answers from the instances, so a wrong order or count shows.
"""

from __future__ import annotations

import http.server
import json
import secrets
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, quote, urlencode

import httpx

from toolkit._client import Client

App = Callable[[httpx.Request], httpx.Response]
BASE = "http://gateway.test:8080"  # where the MockTransport-backed clients point


def make(app: Callable[[httpx.Request], httpx.Response], **options: Any) -> Client:
    options.setdefault("backoff", 0)
    return Client(BASE, transport=httpx.MockTransport(app), **options)


class Script:
    """Answers from a list, one per request (the last one repeats); counts the attempts."""

    def __init__(self, *answers: httpx.Response | Exception | Callable[[httpx.Request], httpx.Response]) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    @property
    def attempts(self) -> int:
        return len(self.requests)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers[min(len(self.requests), len(self.answers)) - 1]
        if isinstance(answer, Exception):
            raise type(answer)(str(answer), request=request)  # type: ignore[call-arg]
        if callable(answer):
            return answer(request)
        return answer


def score(instance: Any) -> Any:
    """The stand-in model: the length of a text, twice a number, the sum of a list."""
    if isinstance(instance, dict) and "data" in instance:
        return len(str(instance["data"]))
    if isinstance(instance, (int, float)):
        return instance * 2
    if isinstance(instance, list):
        return sum(instance)
    return None


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, json=body, headers=headers)


@dataclass
class V1Model:
    """A KServe v1 server (the kserve wrapper's answers) serving ``models``; records every request it gets."""

    models: tuple[str, ...] = ("bert",)
    ready: bool = True
    requests: list[httpx.Request] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        with self.lock:
            self.requests.append(request)
        path = request.url.path
        if request.method == "GET" and path == "/v1/models":
            return json_response(200, {"models": list(self.models)})
        if request.method == "GET" and path.startswith("/v1/models/"):
            name = path.removeprefix("/v1/models/")
            if name not in self.models:
                return json_response(404, {"error": f"Model with name {name} does not exist."})
            if not self.ready:
                return json_response(503, {"error": f"Model with name {name} is not ready."})
            return json_response(200, {"name": name, "ready": True})
        if request.method == "POST" and ":" in path:
            name, verb = path.removeprefix("/v1/models/").rsplit(":", 1)
            if name not in self.models:
                return json_response(404, {"error": f"Model with name {name} does not exist."})
            try:
                instances = json.loads(request.content)["instances"]
            except (ValueError, KeyError, TypeError):
                return json_response(400, {"error": "Invalid request body: expected {\"instances\": [...]}"})
            if verb == "predict":
                return json_response(200, {"predictions": [score(x) for x in instances]})
            if verb == "explain":
                return json_response(200, {"explanations": [{"instance": x, "score": score(x)} for x in instances]})
        return json_response(404, {"error": "Not Found"})

    def posts(self) -> list[httpx.Request]:
        return [r for r in self.requests if r.method == "POST"]


def cookies_of(request: httpx.Request) -> dict[str, str]:
    jar: dict[str, str] = {}
    for part in request.headers.get("cookie", "").split(";"):
        name, sep, value = part.strip().partition("=")
        if sep:
            jar[name] = value
    return jar


def _html(body: str, status: int = 200, headers: list[tuple[str, str]] | None = None) -> httpx.Response:
    page = f"<!DOCTYPE html><html><head><title>dex</title></head><body>{body}</body></html>"
    return httpx.Response(status, headers=[("content-type", "text/html; charset=utf-8"), *(headers or [])],
                          content=page.encode())


def _redirect(location: str, status: int = 302, cookies: Sequence[str] = ()) -> httpx.Response:
    return httpx.Response(status, headers=[("location", location), *(("set-cookie", c) for c in cookies)])


@dataclass
class KubeflowGateway:
    """Kubeflow's ingress as a browser meets it: oidc-authservice (<= 1.8) or oauth2-proxy (>= 1.9) in front of
    ``app``, and Dex behind /dex with a static-password connector.

    What the real components do, as far as a client can see: an unauthenticated request is redirected (302) to
    /dex/auth with an OAuth state kept in a cookie; Dex redirects to the connector (or shows a chooser with several),
    then to /dex/auth/CONNECTOR/login?back=&state=REQ, whose form posts login/password; a wrong password shows the
    form again (200, or 401 in newer Dex); success redirects (303) to the approval page (if enabled) or to the
    callback, which checks the state cookie and sets the session cookie.
    """

    app: App
    users: dict[str, str] = field(default_factory=lambda: {"user@example.com": "12341234"})
    connectors: tuple[str, ...] = ("local",)
    approval: bool = False
    oauth2_proxy: bool = False
    wrong_password_status: int = 200
    refuse_status: int | None = None  # oauth2-proxy set to answer 401/403 instead of redirecting to /oauth2/start
    sessions: set[str] = field(default_factory=set)
    logins: int = 0
    requests: list[httpx.Request] = field(default_factory=list)
    _requests_by_id: dict[str, dict[str, str]] = field(default_factory=dict)
    _codes: dict[str, str] = field(default_factory=dict)

    @property
    def cookie_name(self) -> str:
        return "oauth2_proxy_kubeflow" if self.oauth2_proxy else "authservice_session"

    @property
    def callback(self) -> str:
        return "/oauth2/callback" if self.oauth2_proxy else "/login/oidc"

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.path
        if path.startswith("/dex/"):
            return self._dex(request)
        if path == self.callback:
            return self._callback(request)
        if cookies_of(request).get(self.cookie_name) in self.sessions:
            return self.app(request)
        if path == "/oauth2/start" or not self.oauth2_proxy:
            state = secrets.token_urlsafe(12)
            query = urlencode({"client_id": "kubeflow-oidc-authservice", "redirect_uri": self.callback,
                               "response_type": "code", "scope": "openid profile email groups", "state": state})
            csrf = "_oauth2_proxy_kubeflow_csrf" if self.oauth2_proxy else "oidc_state_csrf"
            return _redirect(f"/dex/auth?{query}", cookies=[f"{csrf}={state}; Path=/; HttpOnly"])
        if self.refuse_status:
            return _html("Unauthorized", self.refuse_status)
        return _redirect("/oauth2/start?rd=" + quote(path))

    def _dex(self, request: httpx.Request) -> httpx.Response:
        path, params = request.url.path, request.url.params
        if path == "/dex/auth" and request.method == "GET":
            if params.get("redirect_uri") != self.callback or not params.get("state"):
                return _html("Bad request: invalid redirect_uri or state", 400)
            if len(self.connectors) > 1:
                links = "".join(f'<a href="/dex/auth/{c}?{request.url.query.decode()}">Log in with {c}</a>'
                                for c in self.connectors)
                return _html(f"<div class='theme-form-row'>{links}</div>")
            return _redirect(f"/dex/auth/{self.connectors[0]}?{request.url.query.decode()}")
        parts = path.strip("/").split("/")  # dex, auth, CONNECTOR[, login]
        if len(parts) == 3 and parts[1] == "auth" and parts[2] in self.connectors:
            req = secrets.token_urlsafe(8)
            self._requests_by_id[req] = {"state": params["state"], "redirect_uri": params["redirect_uri"]}
            return _redirect(f"/dex/auth/{parts[2]}/login?back=&state={req}")
        if len(parts) == 4 and parts[1] == "auth" and parts[3] == "login":
            req = params.get("state", "")
            if req not in self._requests_by_id:
                return _html("Invalid state", 400)
            if request.method == "GET":
                return self._login_page(parts[2], req)
            form = {k: v[0] for k, v in parse_qs(request.content.decode()).items()}
            if self.users.get(form.get("login", "")) != form.get("password"):
                return self._login_page(parts[2], req, "Invalid Email Address and password.",
                                        self.wrong_password_status)
            if self.approval:
                return _redirect(f"/dex/approval?req={req}", 303)
            return self._issue_code(req)
        if path == "/dex/approval":
            if request.method == "GET":
                req = params.get("req", "")
                return _html(
                    f'<form method="post"><input type="hidden" name="req" value="{req}"/>'
                    '<input type="hidden" name="approval" value="approve"><button type="submit">Grant Access</button>'
                    f'</form><form method="post"><input type="hidden" name="req" value="{req}"/>'
                    '<input type="hidden" name="approval" value="rejected"><button type="submit">Cancel</button></form>'
                )
            form = {k: v[0] for k, v in parse_qs(request.content.decode()).items()}
            if form.get("approval") != "approve" or form.get("req") not in self._requests_by_id:
                return _html("Access denied", 403)
            return self._issue_code(form["req"])
        return _html("Not found", 404)

    def _login_page(self, connector: str, req: str, error: str = "", status: int = 200) -> httpx.Response:
        return _html(
            f'<h2>Log in to Your Account</h2><div id="login-error">{error}</div>'
            f'<form method="post" action="/dex/auth/{connector}/login?back=&amp;state={req}">'
            '<input tabindex="1" required id="login" name="login" type="text" placeholder="email address" autofocus/>'
            '<input tabindex="2" required id="password" name="password" type="password" placeholder="password"/>'
            '<button tabindex="3" id="submit-login" type="submit">Login</button></form>', status)

    def _issue_code(self, req: str) -> httpx.Response:
        target = self._requests_by_id.pop(req)
        code = secrets.token_urlsafe(12)
        self._codes[code] = target["state"]
        return _redirect(f"{target['redirect_uri']}?code={code}&state={target['state']}", 303)

    def _callback(self, request: httpx.Request) -> httpx.Response:
        params = request.url.params
        csrf = "_oauth2_proxy_kubeflow_csrf" if self.oauth2_proxy else "oidc_state_csrf"
        state = self._codes.pop(params.get("code", ""), None)
        if state is None or state != params.get("state") or cookies_of(request).get(csrf) != state:
            return _html("Invalid state or code", 400)
        session = secrets.token_urlsafe(24) + "=="  # base64 padding, as real session values have
        self.sessions.add(session)
        self.logins += 1
        return _redirect("/", cookies=[f"{self.cookie_name}={session}; Path=/; Max-Age=86400; HttpOnly"])


class LoopbackServer:
    """Serve an app over real HTTP/1.1 on 127.0.0.1 (a free port) in a thread; ``url`` is its root."""

    def __init__(self, app: App) -> None:
        self.app = app
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                host = self.headers.get("Host") or f"127.0.0.1:{outer.port}"
                request = httpx.Request(self.command, f"http://{host}{self.path}",
                                        headers=list(self.headers.items()), content=body)
                response = outer.app(request)
                content = response.content
                self.send_response(response.status_code)
                for name, value in response.headers.multi_items():
                    if name.lower() not in ("content-length", "transfer-encoding", "connection"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            do_GET = do_POST = do_PUT = do_DELETE = _serve  # noqa: N815

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="loopback-server", daemon=True)

    def __enter__(self) -> LoopbackServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
