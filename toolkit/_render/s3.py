"""S3 access for the storage-initializer: the credentials a caller asks for, and the Secret KServe reads them from.

KServe's storage-initializer finds S3 settings on a Secret listed by the predictor's ServiceAccount: the keys as
``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY`` entries and the rest as ``serving.kserve.io/s3-*`` annotations
(kserve/kserve ``pkg/credentials/s3/s3_secret.go``): ``s3-endpoint`` (host[:port], the URL is built from
``s3-usehttps``), ``s3-usehttps``, ``s3-region``, ``s3-verifyssl`` and ``s3-useanoncredential``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from .._errors import RenderError
from .._names import dns1123_subdomain_problem
from .._templating import render_template
from .checks import check_name

S3_ANNOTATIONS = "serving.kserve.io/s3-"
KEY_NAMES = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")

# An S3 endpoint as KServe's annotation takes it: a host (name, IPv4 or bracketed IPv6) with an optional port and
# scheme; nothing after the authority, since KServe appends the bucket itself.
_S3_ENDPOINT = re.compile(
    r"(?:(?P<scheme>https?)://)?(?P<host>[A-Za-z0-9._-]+|\[[0-9A-Fa-f:.]+\])(?::(?P<port>[0-9]{1,5}))?/?"
)
_S3_REGION = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")  # us-east-1, and the free-form names of MinIO setups


@dataclass(frozen=True)
class S3Credentials:
    """How the storage-initializer reaches an S3 (or S3-compatible) store: the Secret KServe reads.

    ``endpoint`` is ``https://host[:port]``, ``http://host:port`` or a bare ``host[:port]`` (None: AWS S3);
    ``use_https`` defaults to the endpoint's scheme (https when it has none). ``anonymous`` reads a public bucket
    with no keys. The keys are only held here when the caller put them here (or called ``from_env``); they never
    appear in ``repr`` or in any error message.
    """

    endpoint: str | None = None
    region: str | None = None
    use_https: bool | None = None
    verify_ssl: bool | None = None
    anonymous: bool = False
    secret_name: str | None = None  # default: NAME-s3
    access_key_id: str | None = field(default=None, repr=False)
    secret_access_key: str | None = field(default=None, repr=False)

    @classmethod
    def from_env(
        cls,
        *,
        endpoint: str | None = None,
        region: str | None = None,
        use_https: bool | None = None,
        verify_ssl: bool | None = None,
        secret_name: str | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> S3Credentials:
        """Credentials with the keys taken from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (an explicit ask).

        Raises RenderError naming the missing variable (never a value).
        """
        env = os.environ if environ is None else environ
        missing = [k for k in KEY_NAMES if not env.get(k)]
        if missing:
            verb = "is" if len(missing) == 1 else "are"
            raise RenderError(
                f"{' and '.join(missing)} {verb} not set: the S3 Secret needs both keys",
                hint="export AWS_ACCESS_KEY_ID=... AWS_SECRET_ACCESS_KEY=... (the keys the storage-initializer "
                "reads the bucket with), or use --s3-anonymous for a public bucket",
            )
        return cls(
            endpoint=endpoint, region=region, use_https=use_https, verify_ssl=verify_ssl, secret_name=secret_name,
            access_key_id=env["AWS_ACCESS_KEY_ID"], secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        )

    @classmethod
    def from_options(
        cls,
        *,
        endpoint: str | None = None,
        region: str | None = None,
        verify_ssl: bool | None = None,
        anonymous: bool = False,
        keys_from_env: bool = False,
    ) -> S3Credentials | None:
        """The credentials a set of S3 options asks for (``mar-build render --s3-*``), or None when none was given.

        ``keys_from_env`` reads the keys as ``from_env`` does (they go into a Secret of their own); ``anonymous``
        reads a public bucket with no keys; endpoint, region or verify_ssl alone give a Secret without keys, which
        render refuses with a hint unless one of the two is chosen. Raises RenderError for anonymous together with
        keys, and as ``from_env`` when a key variable is not set.
        """
        if anonymous and keys_from_env:
            raise RenderError(
                "--s3-anonymous needs no keys: anonymous access reads a public bucket without them",
                hint="leave out --s3-secret-file for a public bucket, or --s3-anonymous to use your keys",
            )
        if keys_from_env:
            return cls.from_env(endpoint=endpoint, region=region, verify_ssl=verify_ssl)
        if anonymous or endpoint is not None or region is not None or verify_ssl is not None:
            return cls(endpoint=endpoint, region=region, verify_ssl=verify_ssl, anonymous=anonymous)
        return None

    @property
    def has_keys(self) -> bool:
        return bool(self.access_key_id) or bool(self.secret_access_key)


def render_secret(
    s3: S3Credentials, isvc_name: str, namespace: str | None, labels: list[tuple[str, str]]
) -> tuple[str, str]:
    """(name, text) of the Secret KServe reads the S3 settings and keys from."""
    name = s3.secret_name or f"{isvc_name}-s3"
    check_name(name, dns1123_subdomain_problem, "secret name")
    text = render_template(
        "secret.yaml.jinja", name=name, namespace=namespace, labels=labels, annotations=s3_annotations(s3),
        keys=_s3_keys(s3),
    )
    return name, text


def s3_annotations(s3: S3Credentials) -> list[tuple[str, str]]:
    """The ``serving.kserve.io/s3-*`` annotations for ``s3``, in a stable order; RenderError for bad values."""
    out: list[tuple[str, str]] = []
    use_https = s3.use_https
    if s3.endpoint is not None:
        host, scheme = _endpoint_host(s3.endpoint)
        if scheme is not None and use_https is not None and use_https != (scheme == "https"):
            raise RenderError(f"S3 endpoint {s3.endpoint!r} contradicts use_https={use_https}")
        if use_https is None:
            use_https = scheme != "http"
        out.append((S3_ANNOTATIONS + "endpoint", host))
    if use_https is not None:
        out.append((S3_ANNOTATIONS + "usehttps", "1" if use_https else "0"))
    if s3.region is not None:
        if not isinstance(s3.region, str) or not _S3_REGION.fullmatch(s3.region):
            raise RenderError(f"S3 region {s3.region!r} is not a region name", hint="e.g. us-east-1")
        out.append((S3_ANNOTATIONS + "region", s3.region))
    if s3.verify_ssl is not None:
        out.append((S3_ANNOTATIONS + "verifyssl", "1" if s3.verify_ssl else "0"))
    if s3.anonymous:
        out.append((S3_ANNOTATIONS + "useanoncredential", "true"))
    return out


def _endpoint_host(endpoint: object) -> tuple[str, str | None]:
    """(host[:port], the scheme or None) of an endpoint; KServe wants host[:port] and builds the URL itself."""
    match = _S3_ENDPOINT.fullmatch(endpoint) if isinstance(endpoint, str) else None
    if match is None:
        raise RenderError(
            f"S3 endpoint {endpoint!r} is not a host[:port] or http(s)://host[:port] URL",
            hint="e.g. https://s3.us-east-1.amazonaws.com or http://minio-service.kubeflow:9000",
        )
    port = match.group("port")
    if port is not None and not 0 < int(port) < 65536:
        raise RenderError(f"S3 endpoint {endpoint!r}: port {port} is out of range")
    return match.group("host") + (f":{port}" if port else ""), match.group("scheme")


def _s3_keys(s3: S3Credentials) -> list[tuple[str, str]]:
    if s3.anonymous:
        if s3.has_keys:
            raise RenderError("S3 credentials are anonymous and also hold keys", hint="choose one")
        # KServe only reads a Secret's annotations when it has the key entries, so they are present, empty.
        return [(name, "") for name in KEY_NAMES]
    if not s3.has_keys:
        raise RenderError(
            "the S3 Secret needs keys, and none were given",
            hint="write the Secret to its own file with --s3-secret-file FILE (keys from AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY; in Python S3Credentials.from_env()), use --s3-anonymous for a public bucket, "
            "or name an existing ServiceAccount with --service-account instead of S3 settings",
        )
    keys = list(zip(KEY_NAMES, (s3.access_key_id, s3.secret_access_key), strict=True))
    for key, value in keys:
        # The message names the variable, never the value.
        if not isinstance(value, str) or not value or not value.isascii() or not value.isprintable() \
                or any(ch.isspace() for ch in value):
            raise RenderError(f"{key} is empty or holds spaces or control characters", hint="check the key")
    return [(k, str(v)) for k, v in keys]
