"""Credentials for a KServe endpoint behind Kubeflow's ingress: a bearer token, a session cookie, or a Dex login.

Kubeflow <= 1.8 puts oidc-authservice in front of the Istio ingress gateway: a request without the
``authservice_session`` cookie is redirected to Dex (``/dex/auth``), the user picks a connector (the local password
database), posts ``login``/``password``, may be asked to approve, and is sent back to the authservice callback
(``/login/oidc``) which sets the session cookie. Kubeflow >= 1.9 does the same through oauth2-proxy
(``/oauth2/start`` ... ``/oauth2/callback``) with the cookie ``oauth2_proxy_kubeflow``. The login here walks that
chain like a browser does, one request at a time, as a sans-I/O flow that the sync and async clients both drive.
"""

from __future__ import annotations

import html.parser
import logging
import re
from dataclasses import dataclass, field

import httpx

from .._errors import PredictError
from .flow import Flow, RequestBuilder, fetch

log = logging.getLogger("toolkit.client")

AUTHSERVICE_COOKIE = "authservice_session"  # Kubeflow <= 1.8 (Dex + oidc-authservice)
OAUTH2_PROXY_COOKIE = "oauth2_proxy_kubeflow"  # Kubeflow >= 1.9 (Dex + oauth2-proxy)
SESSION_COOKIES = (AUTHSERVICE_COOKIE, OAUTH2_PROXY_COOKIE)

# A login is a handful of hops (gateway -> /dex/auth -> connector -> login form -> approval -> callback);
# more than this is a redirect loop.
_MAX_LOGIN_STEPS = 20
# An RFC 6265 cookie name (an RFC 7230 token); applied with fullmatch, since `$` also matches before a final "\n".
_COOKIE_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")

TOKEN_HINT = (
    "give a service-account token (token=, --token or MAR_BUILD_TOKEN): kubectl create token SA -n NAMESPACE "
    "--audience=istio-ingressgateway.istio-system.svc.cluster.local"
)
LOGIN_HINT = (
    "the session is missing or expired: copy a fresh session cookie from the browser "
    f"({AUTHSERVICE_COOKIE} on Kubeflow <= 1.8, {OAUTH2_PROXY_COOKIE} on >= 1.9), or pass username/password "
    "for a Dex login, or " + TOKEN_HINT.removeprefix("give ")
)


def is_cookie_name(name: object) -> bool:
    """Whether ``name`` can be a cookie's name in a Cookie header."""
    return isinstance(name, str) and _COOKIE_NAME.fullmatch(name) is not None


@dataclass(frozen=True)
class Credentials:
    """A Dex user: the static-password (``local``) connector by default, ``ldap`` where that is configured."""

    username: str
    password: str = field(repr=False)
    connector: str = "local"


def parse_cookie(text: str, cookie_name: str = AUTHSERVICE_COOKIE) -> dict[str, str]:
    """A cookie as the user has it -> {name: value}.

    ``text`` is either "name=value" (several joined with "; ", as copied from a browser's Cookie header) or the
    value alone, which is stored under ``cookie_name``. Session values are base64 and may contain "=", so the text
    counts as "name=value" only when it names a known session cookie (or ``cookie_name``) or holds several cookies.
    Raises PredictError for text that cannot be a Cookie header.
    """
    text = text.strip()
    if text[:7].lower() == "cookie:":  # a whole header line pasted
        text = text[7:].strip()
    if not text:
        raise PredictError("the cookie is empty", hint=LOGIN_HINT)
    if any(c in text for c in "\r\n\0"):
        raise PredictError("the cookie holds a line break or NUL: it cannot go into a Cookie header")
    first = text.split("=", 1)[0].strip()
    if ";" not in text and first not in (*SESSION_COOKIES, cookie_name):
        return {cookie_name: text}
    cookies: dict[str, str] = {}
    for part in text.split(";"):
        name, sep, value = part.strip().partition("=")
        if not part.strip():
            continue
        if not sep or not is_cookie_name(name.strip()):
            raise PredictError(
                f"cookie part {part.strip()[:40]!r} is not name=value",
                hint=f'give "NAME=VALUE; NAME2=VALUE2", or the value alone for the cookie {cookie_name}',
            )
        cookies[name.strip()] = value.strip()
    return cookies


def is_login_redirect(response: httpx.Response) -> bool:
    """True when ``response`` sends the caller to a login page (how an expired Kubeflow session shows up)."""
    if not response.is_redirect:
        return False
    location = response.headers.get("location", "").lower()
    return any(marker in location for marker in ("dex", "oauth2", "auth", "login", "signin", "sign_in"))


@dataclass
class _Form:
    action: str | None = None
    method: str = "get"
    fields: dict[str, str] = field(default_factory=dict)
    has_password: bool = False


class _FormParser(html.parser.HTMLParser):
    """The forms of a page with their inputs: enough to read Dex's login and approval pages."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.forms: list[_Form] = []
        self._current: _Form | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k.lower(): (v or "") for k, v in attrs}
        if tag == "form":
            self._current = _Form(action=a.get("action") or None, method=(a.get("method") or "get").lower())
            self.forms.append(self._current)
        elif tag in ("input", "button") and self._current is not None:
            kind = a.get("type", "text").lower()
            if kind == "password":
                self._current.has_password = True
            if a.get("name") and kind in ("hidden", "submit") and a["name"] not in self._current.fields:
                self._current.fields[a["name"]] = a.get("value", "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._current = None


def _forms(response: httpx.Response) -> list[_Form]:
    if "html" not in response.headers.get("content-type", "text/html"):
        return []
    parser = _FormParser()
    parser.feed(response.text)
    parser.close()
    return parser.forms


def _session_cookie(jar: httpx.Cookies, cookie_name: str) -> dict[str, str] | None:
    # Read the jar directly: a Secure cookie set over plain http is kept but would never be "sent" by the jar.
    for name in (cookie_name, *SESSION_COOKIES):
        for cookie in jar.jar:
            if cookie.name == name and cookie.value:
                return {cookie.name: cookie.value}
    return None


class _Login:
    """Where one Dex login stands: the next request to send, and which steps are behind it."""

    def __init__(self, start_url: httpx.URL, credentials: Credentials, cookie_name: str) -> None:
        self.credentials = credentials
        self.cookie_name = cookie_name
        self.url, self.method = start_url, "GET"
        self.data: dict[str, str] | None = None  # the form to post, with method POST
        self.redirected = self.posted = self.approved = self.tried_oauth2_start = False

    def go(self, url: httpx.URL, method: str = "GET", data: dict[str, str] | None = None) -> None:
        self.url, self.method, self.data = url, method, data

    def advance(self, response: httpx.Response, jar: httpx.Cookies) -> dict[str, str] | None:
        """Read ``response``: the session cookie ({} when no login is needed) once done, else None with the next
        request set. Raises PredictError when the login cannot go on."""
        if self.posted and (session := _session_cookie(jar, self.cookie_name)):
            log.info("dex login: got session cookie %s", next(iter(session)))
            return session
        if response.is_redirect:
            location = response.headers.get("location")
            if not location:
                raise _login_error("a redirect without a Location header", response)
            self.go(response.url.join(location))
            self.redirected = True
            return None
        if not self.redirected:
            return self._not_redirected(response)
        self._on_page(response)
        return None

    def _not_redirected(self, response: httpx.Response) -> dict[str, str] | None:
        """The gateway's first answer was not a redirect: oauth2-proxy's 401/403, or an endpoint without login."""
        if self.tried_oauth2_start:
            raise _login_error("the gateway refused the call and /oauth2/start did not lead to a login", response)
        if response.status_code in (401, 403):
            # oauth2-proxy (Kubeflow >= 1.9) may answer 401/403 instead of redirecting: start its flow.
            self.go(self.url.copy_with(path="/oauth2/start", query=b"rd=/"))
            self.tried_oauth2_start = True
            return None
        # oidc-authservice and oauth2-proxy redirect every request without a session: this endpoint has none.
        log.info("dex login: %s answered %s without a redirect: no login needed", _safe(self.url),
                 response.status_code)
        return {}

    def _on_page(self, response: httpx.Response) -> None:
        """A page of the login: Dex's login form, its connector chooser, or its approval form."""
        if response.status_code == 401 and self.posted:
            raise _bad_credentials(self.credentials, response)
        if response.status_code != 200:
            raise _login_error(f"{self.method} answered {response.status_code}", response)
        forms = _forms(response)
        login_form = next((f for f in forms if f.has_password), None)
        if login_form is not None:
            if self.posted:  # Dex shows the form again (200 in older releases) when the credentials are wrong
                raise _bad_credentials(self.credentials, response)
            target = response.url.join(login_form.action) if login_form.action else response.url
            self.go(target, "POST", {**login_form.fields, "login": self.credentials.username,
                                     "password": self.credentials.password})
            self.posted = True
        elif re.search(r"/auth/?\Z", response.url.path) and not self.posted:
            # Dex's connector chooser (several connectors): go to /auth/<connector> with the same query.
            self.go(response.url.copy_with(path=response.url.path.rstrip("/") + "/" + self.credentials.connector))
        elif self.posted and not self.approved and "approval" in response.url.path:
            form = next((f for f in forms if f.fields.get("approval") == "approve"), None)
            fields = dict(form.fields) if form else {"req": response.url.params.get("req", ""), "approval": "approve"}
            self.go(response.url.join(form.action) if form and form.action else response.url, "POST", fields)
            self.approved = True
        elif self.posted:
            raise _login_error(
                f"the login finished without a session cookie ({self.cookie_name})", response,
                hint=f"Kubeflow >= 1.9 names it {OAUTH2_PROXY_COOKIE}: pass cookie_name= (--cookie-name)",
            )
        else:
            raise _login_error("the gateway did not lead to a Dex login page", response)


def dex_login(
    build: RequestBuilder, start_url: httpx.URL, credentials: Credentials, cookie_name: str
) -> Flow[dict[str, str]]:
    """Log in through the gateway's Dex like a browser; the flow's value is the session cookie {name: value}.

    Starts at ``start_url`` (the gateway root), follows redirects by hand (keeping cookies per host), picks the
    connector on Dex's chooser page, posts the credentials to the login form, approves when Dex asks, and stops as
    soon as the session cookie is set. An endpoint that answers without redirecting needs no login: {}.
    Raises PredictError when a step fails, the credentials are refused, or no session cookie comes back.
    """
    jar = httpx.Cookies()
    login = _Login(start_url, credentials, cookie_name)
    for _ in range(_MAX_LOGIN_STEPS):
        request = build(login.method, login.url, data=login.data, headers={"Accept": "text/html,application/json"})
        jar.set_cookie_header(request)
        try:
            response = yield from fetch(request)
        except (httpx.TransportError, httpx.DecodingError) as exc:
            raise PredictError(
                f"Dex login: {login.method} {_safe(login.url)} failed: {exc or type(exc).__name__}",
                url=_safe(login.url), hint="check the gateway URL (base_url) and that it is reachable",
            ) from exc
        jar.extract_cookies(response)
        log.debug("dex login: %s %s -> %s", login.method, _safe(login.url), response.status_code)
        session = login.advance(response, jar)
        if session is not None:
            return session
    raise PredictError(
        f"Dex login: more than {_MAX_LOGIN_STEPS} steps without a session (a redirect loop?)", url=_safe(login.url),
        hint=LOGIN_HINT,
    )


def _safe(url: httpx.URL) -> str:
    """``url`` without user:password and query (Dex's query holds the OAuth state)."""
    return str(url.copy_with(userinfo=b"", query=None))


def _login_error(what: str, response: httpx.Response, *, hint: str | None = None) -> PredictError:
    return PredictError(
        f"Dex login: {_safe(response.url)}: {what}",
        status=response.status_code, url=_safe(response.url), body=response.text[:2000],
        hint=hint or "use a token or a session cookie instead, or check that this Kubeflow uses Dex",
    )


def _bad_credentials(credentials: Credentials, response: httpx.Response) -> PredictError:
    return PredictError(
        f"Dex refused the login for user {credentials.username!r} (connector {credentials.connector!r})",
        status=response.status_code, url=_safe(response.url),
        hint="check the username (usually an email address) and password; for LDAP users pass connector 'ldap'",
    )
