"""A small client of the OCI distribution API over httpx, and the docker-config credentials it logs in with.

Only what staging needs: the /v2/ probe and login (Basic, or a Bearer token fetched once for the repositories
this run touches), blob HEAD / streamed PUT / cross-repository mount / GET, manifest HEAD / GET / PUT. Every
failure becomes a StagingError naming the registry, the status and the registry's error code, with the fix.

Credentials are read, never written, from the files `docker login` and `podman login` write ($REGISTRY_AUTH_FILE,
$DOCKER_CONFIG/config.json or ~/.docker/config.json, $XDG_RUNTIME_DIR/containers/auth.json), or asked of the
credential helper they name. They are never logged or put in a message: errors name the file and the user only.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import logging
import re
import subprocess
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from .._errors import StagingError
from .._registries import auth_files
from ._oci_image import DOCKER_LIST, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST

log = logging.getLogger("toolkit.stage")

MANIFEST_ACCEPT = ", ".join([OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST])
# The host a docker.io reference really talks to, and the keys `docker login` files its credentials under.
_DOCKER_HUB = {"docker.io", "index.docker.io", "registry-1.docker.io"}
_LOGIN_HINT = ("log in with `podman login {host}` or `docker login {host}` (they write the files read here), "
               "or point REGISTRY_AUTH_FILE at an auth file with an entry for {host}")


@dataclass(frozen=True)
class Credentials:
    """A user name and password (or token) for one registry, and the file they came from (for messages)."""

    username: str
    password: str = field(repr=False)
    source: str


def _host_of(key: str) -> str:
    """'https://index.docker.io/v1/' -> 'index.docker.io': auths keys come with and without scheme and path."""
    return re.sub(r"^[a-z]+://", "", key).split("/", 1)[0]


def _same_registry(a: str, b: str) -> bool:
    return a == b or (a in _DOCKER_HUB and b in _DOCKER_HUB)


def find_credentials(registry: str) -> tuple[Credentials | None, list[str]]:
    """The first credentials for ``registry`` in the auth files (or their helpers), and the files looked at."""
    tried: list[str] = []
    for path in auth_files():
        try:
            config = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            continue
        except (OSError, ValueError) as exc:
            log.debug("ignoring the auth file %s: %s", path, type(exc).__name__)
            continue
        tried.append(str(path))
        if not isinstance(config, dict):
            continue
        found = _from_auths(config.get("auths"), registry, path) or _from_helper(config, registry, path)
        if found is not None:
            return found, tried
    return None, tried


def _from_auths(auths: Any, registry: str, path: Path) -> Credentials | None:
    if not isinstance(auths, dict):
        return None
    for key, entry in auths.items():
        if not isinstance(entry, dict) or not _same_registry(_host_of(str(key)), registry):
            continue
        if isinstance(entry.get("auth"), str) and entry["auth"]:
            try:
                user, sep, password = base64.b64decode(entry["auth"]).decode("utf-8").partition(":")
            except (binascii.Error, UnicodeDecodeError):
                log.debug("the auth entry for %s in %s is not base64 of user:password", key, path)
                continue
            if sep:
                return Credentials(user, password, f"{path} ({key})")
        if isinstance(entry.get("username"), str) and isinstance(entry.get("password"), str):
            return Credentials(entry["username"], entry["password"], f"{path} ({key})")
    return None


def _from_helper(config: dict[str, Any], registry: str, path: Path) -> Credentials | None:
    helpers: dict[str, Any] = config["credHelpers"] if isinstance(config.get("credHelpers"), dict) else {}
    helper = next((v for k, v in helpers.items() if _same_registry(_host_of(str(k)), registry)), None)
    helper = helper or config.get("credsStore")
    if not isinstance(helper, str) or not helper:
        return None
    program = f"docker-credential-{helper}"
    try:
        # The helper's output holds the secret: it is parsed, never logged.
        answer = subprocess.run([program, "get"], input=registry, capture_output=True, text=True, timeout=30)
        data = json.loads(answer.stdout) if answer.returncode == 0 else None
    except (OSError, ValueError, subprocess.SubprocessError) as exc:
        log.debug("credential helper %s (named in %s) gave nothing: %s", program, path, type(exc).__name__)
        return None
    if not isinstance(data, dict) or not data.get("Secret") or data.get("Username") == "<token>":
        return None
    return Credentials(str(data.get("Username", "")), str(data["Secret"]), f"{program} (named in {path})")


class Registry:
    """One registry (host[:port]) over one httpx client; ``login`` first, then the blob and manifest calls."""

    def __init__(self, registry: str, *, plain_http: bool, uri: str, transport: httpx.BaseTransport | None = None,
                 timeout: float = 60.0) -> None:
        self.registry = registry
        self.uri = uri
        self.plain_http = plain_http
        host = "registry-1.docker.io" if registry in _DOCKER_HUB else registry
        self.http = httpx.Client(
            base_url=f"{'http' if plain_http else 'https'}://{host}", transport=transport,
            timeout=httpx.Timeout(timeout, connect=10.0), follow_redirects=True,
            headers={"User-Agent": "mar-build"},
        )
        self.credentials: Credentials | None = None
        self.tried: list[str] = []
        self.requests = 0
        self.reached = False  # answered once: a later connection failure means it stopped answering

    def close(self) -> None:
        self.http.close()

    # ---- login ------------------------------------------------------------------------------------------
    def login(self, repositories: dict[str, str]) -> None:
        """Probe /v2/ and authenticate once for ``repositories`` (name -> 'pull' or 'pull,push').

        Up front, because a streamed upload cannot be replayed after a 401.
        """
        probe = self._send("GET", "/v2/", doing="checking the registry")
        self.reached = True
        if probe.status_code == 200:
            return
        if probe.status_code != 401:
            raise self.error(probe, "checking the registry (GET /v2/)",
                             hint=f"is {self.registry} an OCI registry? the URI is oci://REGISTRY/REPOSITORY:TAG")
        self.credentials, self.tried = find_credentials(self.registry)
        scheme, _, params = probe.headers.get("www-authenticate", "").partition(" ")
        if scheme.lower() == "bearer":
            self._bearer(dict(re.findall(r'(\w+)="([^"]*)"', params)), repositories)
        elif self.credentials is None:
            raise StagingError(f"{self.registry} asks for credentials and {self._none_found()}", uri=self.uri,
                               hint=_LOGIN_HINT.format(host=self.registry))
        else:
            self.http.auth = httpx.BasicAuth(self.credentials.username, self.credentials.password)
            # Checked now, not at the first upload: a refused password is then named before any work is done.
            again = self._send("GET", "/v2/", doing="logging in")
            if again.status_code in (401, 403):
                raise self.error(again, "logging in")

    def _none_found(self) -> str:
        where = ", ".join(self.tried) if self.tried else "no auth file (" + ", ".join(map(str, auth_files())) + ")"
        return f"none were found for it in {where}"

    def _bearer(self, challenge: dict[str, str], repositories: dict[str, str]) -> None:
        realm = challenge.get("realm")
        if not realm:
            raise StagingError(f"{self.registry} sent a Bearer challenge without a realm", uri=self.uri)
        params = [("service", challenge.get("service", ""))]
        params += [("scope", f"repository:{repo}:{actions}") for repo, actions in repositories.items()]
        auth = (httpx.BasicAuth(self.credentials.username, self.credentials.password)
                if self.credentials else None)
        answer = self._send("GET", realm, params=params, auth=auth, doing="getting a token")
        if answer.status_code != 200:
            raise self.error(answer, f"getting a token from {httpx.URL(realm).host}")
        try:
            body = answer.json()
            token = body.get("token") or body["access_token"]
        except (ValueError, KeyError, AttributeError) as exc:
            raise StagingError(f"{self.registry}'s token service answered without a token", uri=self.uri) from exc
        self.http.headers["Authorization"] = f"Bearer {token}"

    # ---- requests ---------------------------------------------------------------------------------------
    def _send(self, method: str, url: str, *, doing: str, **kwargs: Any) -> httpx.Response:
        self.requests += 1
        try:
            return self.http.request(method, url, **kwargs)
        except httpx.TransportError as exc:
            raise self.transport_error(exc, doing) from exc

    def blob_exists(self, repo: str, digest: str) -> bool:
        answer = self._send("HEAD", f"/v2/{repo}/blobs/{digest}", doing="checking a layer")
        if answer.status_code in (200, 404):
            return answer.status_code == 200
        raise self.error(answer, f"checking layer {digest[:19]} in {repo}")

    def put_blob(self, repo: str, digest: str, size: int, content: bytes | Iterable[bytes]) -> None:
        """Upload one blob: POST an upload, then one PUT of its bytes (streamed) with the digest to check."""
        started = self._send("POST", f"/v2/{repo}/blobs/uploads/", doing="starting an upload")
        if started.status_code != 202 or "location" not in started.headers:
            raise self.error(started, f"starting the upload of {digest[:19]} to {repo}")
        location = self.http.base_url.join(started.headers["location"]).copy_merge_params({"digest": digest})
        body = content if isinstance(content, bytes) else iter(content)
        done = self._send("PUT", str(location), content=body, doing=f"uploading {digest[:19]}",
                          headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)})
        if done.status_code != 201:
            raise self.error(done, f"uploading {digest[:19]} to {repo}")

    def mount_blob(self, repo: str, digest: str, from_repo: str) -> bool:
        """Link a blob of ``from_repo`` (same registry) into ``repo`` without sending it; False if refused."""
        answer = self._send("POST", f"/v2/{repo}/blobs/uploads/", params={"mount": digest, "from": from_repo},
                            doing="mounting a base layer")
        return answer.status_code == 201

    @contextlib.contextmanager
    def stream_blob(self, repo: str, digest: str) -> Iterator[Iterator[bytes]]:
        try:
            with self.http.stream("GET", f"/v2/{repo}/blobs/{digest}") as answer:
                if answer.status_code != 200:
                    answer.read()
                    raise self.error(answer, f"reading {digest[:19]} of {repo}")
                yield answer.iter_bytes(1024 * 1024)
        except httpx.TransportError as exc:
            raise self.transport_error(exc, f"reading {digest[:19]} of {repo}") from exc

    def get_blob(self, repo: str, digest: str) -> bytes:
        answer = self._send("GET", f"/v2/{repo}/blobs/{digest}", doing="reading a blob")
        if answer.status_code != 200:
            raise self.error(answer, f"reading {digest[:19]} of {repo}")
        return answer.content

    def get_manifest(self, repo: str, reference: str) -> tuple[dict[str, Any], str]:
        """The manifest (or index) ``repo:reference`` and its media type."""
        answer = self._send("GET", f"/v2/{repo}/manifests/{reference}", headers={"Accept": MANIFEST_ACCEPT},
                            doing="reading a manifest")
        if answer.status_code != 200:
            raise self.error(answer, f"reading the manifest of {repo}:{reference}")
        try:
            manifest = answer.json()
        except ValueError as exc:
            raise StagingError(f"the manifest of {repo}:{reference} is not JSON", uri=self.uri) from exc
        media_type = manifest.get("mediaType") or answer.headers.get("content-type", "").split(";")[0]
        return manifest, media_type

    def tag_digest(self, repo: str, tag: str) -> str | None:
        """The digest ``repo:tag`` points at now, or None when there is no such tag (or repository)."""
        answer = self._send("HEAD", f"/v2/{repo}/manifests/{tag}", headers={"Accept": MANIFEST_ACCEPT},
                            doing="reading the tag")
        if answer.status_code == 404:
            return None
        if answer.status_code != 200:
            raise self.error(answer, f"reading the tag {repo}:{tag}")
        return answer.headers.get("docker-content-digest")

    def put_manifest(self, repo: str, tag: str, body: bytes, media_type: str) -> str | None:
        """PUT the manifest under ``tag`` (the one write that moves the tag); the digest the registry reports."""
        answer = self._send("PUT", f"/v2/{repo}/manifests/{tag}", content=body,
                            headers={"Content-Type": media_type}, doing="writing the manifest")
        if answer.status_code != 201:
            raise self.error(answer, f"writing the manifest of {repo}:{tag}")
        return answer.headers.get("docker-content-digest")

    # ---- errors -----------------------------------------------------------------------------------------
    def error(self, answer: httpx.Response, doing: str, *, hint: str | None = None) -> StagingError:
        """A StagingError for a refusal: the status, the registry's error code and message, and the fix."""
        code, text = _error_code(answer)
        message = f"{self.registry} refused {doing}: HTTP {answer.status_code}" + (f" {code}" if code else "")
        message += f" ({text})" if text else ""
        return StagingError(message, uri=self.uri, hint=hint or self._hint(answer.status_code, code))

    def _hint(self, status: int, code: str) -> str:
        who = (f"user {self.credentials.username!r} from {self.credentials.source}" if self.credentials
               else f"no credentials ({self._none_found()})")
        if status == 401:
            return f"tried {who}: " + _LOGIN_HINT.format(host=self.registry)
        if status == 403 or code == "DENIED":
            return f"tried {who}: that account may not push to (or read) this repository; ask for access"
        hints = {
            "NAME_UNKNOWN": "no such repository: check the name (registries that do not create repositories "
                            "on push need it created first)",
            "MANIFEST_UNKNOWN": "no such tag or digest in that repository: check it, e.g. with "
                                "`skopeo list-tags docker://REGISTRY/REPOSITORY`",
            "MANIFEST_BLOB_UNKNOWN": "the registry lost a layer between its upload and the manifest (a garbage "
                                     "collection?): run stage again; the tag was not moved",
            "DIGEST_INVALID": "the bytes sent do not match their digest: a file changed while staging? run stage "
                              "again; the tag was not moved",
            "MANIFEST_INVALID": "the registry does not accept this OCI image manifest; it may support only "
                                "Docker v2 manifests",
            "UNSUPPORTED": "the registry does not support this operation or media type",
            "TOOMANYREQUESTS": "the registry is rate-limiting: wait and run stage again",
        }
        if code in hints:
            return hints[code]
        if status == 413:
            return "a proxy in front of the registry limits the request size (nginx client_max_body_size?)"
        return "see the registry's answer above"

    def transport_error(self, exc: httpx.TransportError, doing: str) -> StagingError:
        scheme = "http" if self.plain_http else "https"
        text = str(exc) or type(exc).__name__
        if "SSL" in text or "certificate" in text.lower():
            hint = ("the registry's TLS certificate is not trusted here: set SSL_CERT_FILE to its CA bundle, or, "
                    "for a registry that speaks plain http, pass --insecure-registry")
        elif isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout) and not self.reached:
            hint = (f"check the registry's host and port ({scheme}://{self.registry}) as reached from here"
                    + ("" if self.plain_http else "; a plain-http registry needs --insecure-registry"))
        else:
            hint = ("the registry stopped answering: run stage again (the tag still points at the previous "
                    "image; layers already uploaded are not sent again)")
        return StagingError(f"cannot reach {self.registry} while {doing}: {text}", uri=self.uri, hint=hint)


def _error_code(answer: httpx.Response) -> tuple[str, str]:
    """The first (code, message) of a distribution-API error body, or ('', '') (HEAD answers have no body)."""
    try:
        errors = answer.json().get("errors") or []
        first = errors[0] if errors and isinstance(errors[0], dict) else {}
        return str(first.get("code", "")), str(first.get("message", ""))[:200]
    except (ValueError, AttributeError, httpx.ResponseNotRead):
        return "", ""
