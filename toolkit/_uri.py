"""The one home of the storage URI grammar: ``SCHEME://ROOT[/PATH]`` for pvc, s3, oci and what KServe can fetch.

``stage`` writes pvc:// and s3://, ``serve`` reads those and whatever kserve-storage downloads, ``render`` accepts
every scheme KServe's storage-initializer fetches a folder from. All of them parse here, with one rule per part:

- the whole URI: no whitespace or control characters (a trailing newline is an error, not part of a bucket name);
- ROOT: a PVC claim is a DNS-1123 subdomain, an S3 bucket follows S3's naming rules, a GCS bucket GCS's, an OCI
  registry is a host[:port] (the whole ``oci://`` reference, repository and tag too, is ``parse_image_ref``'s);
- PATH: no empty, '.' or '..' segments and no backslash: on a PVC it becomes a path under the mount (and KServe's
  subPath), on S3 the storage-initializer turns keys into local paths. A trailing '/' is dropped.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection
from dataclasses import dataclass

from . import _names
from ._errors import ToolkitError

# Schemes KServe's storage-initializer can fetch a folder from (file:// and hf:// cannot hold a layout for the pod).
# oci:// is KServe's modelcar mode; oci+fetch:// (the storage-initializer pulls the layers) and oci+native:// (an image
# volume) read the same image.
KSERVE_SCHEMES = ("pvc", "s3", "gs", "https", "http", "hdfs", "webhdfs", "oci", "oci+fetch", "oci+native")
OCI_SCHEMES = ("oci", "oci+fetch", "oci+native")
STAGE_SCHEMES = ("pvc", "s3", "oci")

_URI = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://(?P<rest>.*)", re.DOTALL)
_ROOT_WORD = {"pvc": "claim", "s3": "bucket", "gs": "bucket", "oci": "registry", "oci+fetch": "registry",
              "oci+native": "registry"}
_WHY_NOT = {
    "file": "file:// is a path inside the pod, where no layout is",
    "hf": "hf:// names a Hugging Face repository, not a layout with config/ and model-store/",
}

# An image reference (distribution/reference's grammar): registry host[:port], repository path, tag, digest.
_OCI_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
_OCI_REPOSITORY = re.compile(rf"{_OCI_COMPONENT}(?:/{_OCI_COMPONENT})*")
_OCI_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_OCI_REGISTRY = re.compile(rf"(?:{_OCI_LABEL}(?:\.{_OCI_LABEL})*|\[[0-9A-Fa-f:]+\])(?::[0-9]{{1,5}})?")
_OCI_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_OCI_EXAMPLE = "oci://ghcr.io/team/bert:v1"

ErrorFactory = Callable[..., ToolkitError]
"""Builds the caller's own error from (message, hint=...): StagingError, RenderError, ServeError."""


@dataclass(frozen=True)
class StorageUri:
    """A parsed storage URI: ``scheme://root/path`` (``path`` without leading or trailing '/', may be empty)."""

    scheme: str
    root: str
    path: str

    @property
    def uri(self) -> str:
        return f"{self.scheme}://{self.root}" + (f"/{self.path}" if self.path else "")

    @property
    def segments(self) -> list[str]:
        return self.path.split("/") if self.path else []

    def key(self, relpath: str) -> str:
        """The S3 key (or path under the claim) of a file at ``relpath`` in the layout."""
        return f"{self.path}/{relpath}" if self.path else relpath

    def __str__(self) -> str:
        return self.uri


def parse_storage_uri(
    uri: object, *, schemes: Collection[str] = KSERVE_SCHEMES, error: ErrorFactory = ToolkitError
) -> StorageUri:
    """Parse ``uri`` for one of ``schemes``; raise ``error(message, hint=...)`` naming what is wrong and the fix."""
    example = " or ".join(_EXAMPLES.get(s, f"{s}://...") for s in schemes if s in _EXAMPLES) or "s3://BUCKET/PREFIX"
    if not isinstance(uri, str) or not uri:
        raise error(f"a storage URI must be a non-empty string, got {uri!r}", hint=f"for example {example}")
    if any(ch.isspace() or not ch.isprintable() for ch in uri):
        raise error(f"storage URI {uri!r} contains whitespace or a control character",
                    hint="remove it (a trailing newline from a file or a shell variable, often)")
    match = _URI.fullmatch(uri)
    if match is None:
        hint = f"use {example}"
        if uri.startswith(("/", ".", "~")):
            hint = "a local path means nothing inside the pod: stage the layout first, then " + hint
        raise error(f"{uri!r} is not a storage URI", hint=hint)
    scheme, rest = match["scheme"].lower(), match["rest"]
    if scheme not in schemes:
        takes = ", ".join(s + "://" for s in schemes)
        reason = _WHY_NOT.get(scheme, f"{scheme}:// is not a scheme this step can use (it takes {takes})")
        raise error(f"{uri!r} is not a storage URI for this: {reason}", hint=f"use {example}")
    root, _, path = rest.partition("/")
    path = path[:-1] if path.endswith("/") else path
    if not root:
        what = _ROOT_WORD.get(scheme, "host")
        raise error(f"{uri!r} has no {what}", hint=f"for example {_EXAMPLES.get(scheme.partition('+')[0], example)}")
    _check_root(uri, scheme, root, error)
    bad = [s for s in path.split("/") if s in ("", ".", "..")] if path else []
    if bad or path.startswith("/"):
        raise error(f"the path in {uri!r} has an empty, '.' or '..' segment: it would escape or blur the destination",
                    hint=f"write the path plainly, e.g. {_EXAMPLES.get(scheme, example)}")
    if "\\" in path:
        raise error(f"the path in {uri!r} has a backslash", hint="use '/' between the folders of the path")
    return StorageUri(scheme, root, path)


_EXAMPLES = {
    "pvc": "pvc://CLAIM/PATH",
    "s3": "s3://BUCKET/PREFIX",
    "gs": "gs://BUCKET/PREFIX",
    "oci": "oci://REGISTRY/REPOSITORY:TAG",
}


def _check_root(uri: str, scheme: str, root: str, error: ErrorFactory) -> None:
    if scheme == "pvc":
        problem = _names.dns1123_subdomain_problem(root)
        if problem:
            raise error(f"{root!r} is not a valid PersistentVolumeClaim name: {problem}",
                        hint="kubectl get pvc lists the claims of a namespace")
    elif scheme in OCI_SCHEMES and not _OCI_REGISTRY.fullmatch(root):
        raise error(f"{root!r} in {uri!r} is not a registry host[:port]", hint=f"for example {_OCI_EXAMPLE}")
    elif scheme in ("s3", "gs"):
        problem = _names.bucket_problem(root, scheme)
        if problem:
            store = "S3" if scheme == "s3" else "Cloud Storage"
            raise error(f"{root!r} in {uri!r} is not a valid {store} bucket name: {problem}",
                        hint="the bucket is the first part after the scheme, e.g. s3://models/bert")


@dataclass(frozen=True)
class ImageRef:
    """``REGISTRY/REPOSITORY[:TAG][@DIGEST]`` taken apart."""

    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @property
    def reference(self) -> str:
        return self.digest or self.tag or "latest"

    def __str__(self) -> str:
        return (f"{self.registry}/{self.repository}" + (f":{self.tag}" if self.tag else "")
                + (f"@{self.digest}" if self.digest else ""))


def parse_image_ref(text: str, *, what: str = "the image", error: ErrorFactory = ToolkitError) -> ImageRef:
    """Parse ``REGISTRY/REPOSITORY[:TAG][@sha256:...]`` (an ``oci://`` or ``docker://`` prefix is dropped), with the
    rules of the OCI distribution spec (distribution/reference); raise ``error(message, hint=...)``."""
    rest = re.sub(r"^(?:oci|docker)://", "", text)
    rest, _, digest = rest.partition("@")
    registry, _, path = rest.partition("/")
    if not path or not ("." in registry or ":" in registry or registry == "localhost"):
        raise error(
            f"{what} {text!r} does not start with a registry host",
            hint=f"name the registry, e.g. {_OCI_EXAMPLE}, oci://docker.io/team/bert:v1 or oci://localhost:5000/bert:v1",
        )
    if not _OCI_REGISTRY.fullmatch(registry):
        raise error(f"{registry!r} in {text!r} is not a registry host[:port]",
                           hint=f"for example {_OCI_EXAMPLE}")
    repository, _, tag = path.rpartition(":") if ":" in path else (path, "", "")
    if not _OCI_REPOSITORY.fullmatch(repository):
        raise error(
            f"{repository!r} in {text!r} is not a valid repository name",
            hint="lowercase letters, digits and separators (. _ __ -) between them, folders joined by '/'",
        )
    if tag and _names.image_tag_problem(tag):
        raise error(f"tag {tag!r} in {text!r}: {_names.image_tag_problem(tag)}",
                           hint="a tag is 1-128 letters, digits, '_', '.' and '-', not starting with '.' or '-'")
    if digest and not _OCI_DIGEST.fullmatch(digest):
        raise error(f"{digest!r} in {text!r} is not a sha256 digest",
                           hint="a digest is sha256: and 64 lowercase hex digits")
    return ImageRef(registry, repository, tag or None, digest or None)
