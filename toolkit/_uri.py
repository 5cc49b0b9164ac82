"""The one home of the storage URI grammar: ``SCHEME://ROOT[/PATH]`` for pvc, s3, oci and what KServe can fetch.

``stage`` writes pvc:// and s3://, ``serve`` reads those and whatever kserve-storage downloads, ``render`` accepts
every scheme KServe's storage-initializer fetches a folder from. All of them parse here, with one rule per part:

- the whole URI: no whitespace or control characters (a trailing newline is an error, not part of a bucket name);
- ROOT: a PVC claim is a DNS-1123 subdomain, an S3 bucket follows S3's naming rules, a GCS bucket GCS's;
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
KSERVE_SCHEMES = ("pvc", "s3", "gs", "https", "http", "hdfs", "webhdfs", "oci")
STAGE_SCHEMES = ("pvc", "s3")

_URI = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://(?P<rest>.*)", re.DOTALL)
_ROOT_WORD = {"pvc": "claim", "s3": "bucket", "gs": "bucket", "oci": "registry"}
_WHY_NOT = {
    "file": "file:// is a path inside the pod, where no layout is",
    "hf": "hf:// names a Hugging Face repository, not a layout with config/ and model-store/",
}

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
        raise error(f"{uri!r} has no {what}", hint=f"for example {_EXAMPLES.get(scheme, example)}")
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
    elif scheme in ("s3", "gs"):
        problem = _names.bucket_problem(root, scheme)
        if problem:
            store = "S3" if scheme == "s3" else "Cloud Storage"
            raise error(f"{root!r} in {uri!r} is not a valid {store} bucket name: {problem}",
                        hint="the bucket is the first part after the scheme, e.g. s3://models/bert")
