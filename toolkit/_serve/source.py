"""What serve() serves: a layout folder, a ``pvc://CLAIM/PATH`` under the folder where the claim is mounted, or an
``s3://`` URI downloaded as KServe's storage-initializer downloads it (its contents into a stand-in /mnt/models), or an
``oci://`` image pulled as its oci+fetch mode pulls it."""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from .._errors import ArchiveError, LayoutError, ServeError
from .._events import OnEvent
from .._layout import CONFIG_RELPATH, MODEL_STORE, SnapshotEntry, read_archive
from .._registries import auth_files, is_loopback
from .._uri import OCI_SCHEMES, StorageUri, parse_storage_uri
from . import initializer
from .events import ServeEvent


def resolve_source(
    source: str | Path, mount: str | Path | None, cleanup: list[Path], emit: OnEvent[ServeEvent]
) -> Path:
    """The layout folder to serve for ``source``; a download's folder is added to ``cleanup``.

    Raises LayoutError for a path that is not a folder or a download without config/, ServeError for a PVC without
    ``mount``, a path that leaves the mount, or a failed download."""
    text = str(source)
    if "://" in text:
        uri = parse_storage_uri(text, error=ServeError)
        if uri.scheme == "pvc":
            return pvc_path(uri, mount)
        if uri.scheme in OCI_SCHEMES:
            return download_image(uri, cleanup, emit)
        return download(uri.uri, cleanup, emit)
    path = Path(source).resolve()
    if not path.is_dir():
        raise LayoutError(
            f"{path} is not a folder", path=path,
            hint="pass a layout folder (mar-build build -o DIR), an s3:// URI, or pvc://CLAIM/PATH with --mount DIR",
        )
    return path


def pvc_path(uri: StorageUri, mount: str | Path | None) -> Path:
    """The folder of ``pvc://CLAIM/PATH`` under ``mount``, where the claim is mounted."""
    if mount is None:
        raise ServeError(
            f"{uri}: a PVC is read where it is mounted, and no mount folder was given",
            hint=f"mount claim {uri.root!r} (or copy its contents) and pass mount=DIR (--mount DIR)",
        )
    root = Path(mount).resolve()
    path = (root / uri.path).resolve()
    if not path.is_relative_to(root):  # a symlink inside the claim that points out of it
        raise ServeError(f"{uri}: path {uri.path!r} leaves the mount folder {root}", hint="use a path inside the claim")
    if not path.is_dir():
        raise ServeError(f"{uri}: {path} does not exist", hint=f"is claim {uri.root!r} mounted at {root}?")
    return path


def download_image(uri: StorageUri, cleanup: list[Path], emit: OnEvent[ServeEvent]) -> Path:
    """Pull an image staged with ``stage oci://`` as KServe's oci+fetch storage-initializer does (kserve_storage):
    its ``models/`` into the stand-in /mnt/models. oci+fetch:// and oci+native:// name the same image (KServe's
    webhook hands the initializer plain oci://). The docker/podman auth file is passed the way the webhook mounts
    it (KSERVE_OCI_DOCKER_CONFIG); plain http for a registry on this machine, as storageInitializer.ociInsecureRegistry
    makes it in the cluster."""
    ref = f"oci://{uri.root}/{uri.path}"
    env = {"KSERVE_OCI_INSECURE_REGISTRY": "true" if is_loopback(uri.root) else "false"}
    config = next((path for path in auth_files() if path.is_file()), None)
    if config is not None:
        env["KSERVE_OCI_DOCKER_CONFIG"] = str(config)
    return download(ref, cleanup, emit, env=env)


def download(
    uri: str, cleanup: list[Path], emit: OnEvent[ServeEvent], *, env: dict[str, str] | None = None
) -> Path:
    """Download the contents of ``uri`` into a temporary stand-in for /mnt/models (added to ``cleanup``);
    ``env`` adds to this process's environment for the download (caller's own settings win)."""
    tmp = Path(tempfile.mkdtemp(prefix="mar-build-models-"))
    cleanup.append(tmp)
    # The storage-initializer copies the *contents* of storageUri into /mnt/models; so do we, into a stand-in.
    target = tmp / "models"
    started = time.monotonic()
    try:
        initializer.download(uri, target, env={**(env or {}), **os.environ})
    except ModuleNotFoundError as exc:
        raise ServeError("serving from a URI needs kserve-storage", hint="pip install 'mar-build[serve]'") from exc
    except initializer.DownloadFailed as exc:  # kserve_storage raises bare Exception/RuntimeError for everything
        if uri.startswith("oci://"):
            raise ServeError(
                f"could not pull {uri}: {exc}", log_tail=exc.lines,
                hint="check the image reference (stage prints it) and that `podman login` or `docker login` wrote "
                "credentials for the registry, when it needs them",
            ) from exc
        endpoint = os.environ.get("AWS_ENDPOINT_URL")
        raise ServeError(
            f"could not download {uri}: {exc}", log_tail=exc.lines,
            hint=(f"AWS_ENDPOINT_URL={endpoint}; " if endpoint else "set AWS_ENDPOINT_URL for a non-AWS endpoint; ")
            + "check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY and that the prefix holds config/ and model-store/",
        ) from exc
    seconds = time.monotonic() - started
    emit(ServeEvent("download", f"downloaded {uri} in {seconds:.1f} s", seconds=seconds))
    if not (target / CONFIG_RELPATH).is_file():
        found = sorted(p.relative_to(target).as_posix() for p in target.rglob("*") if p.is_file())[:10]
        raise LayoutError(
            f"{uri} holds no {CONFIG_RELPATH.as_posix()} (found: {', '.join(found) or 'nothing'})", path=target,
            hint="storageUri must point at the folder that holds config/ and model-store/ (mar-build stage)",
        )
    return target


def archive_versions(entries: Sequence[SnapshotEntry], layout: Path) -> dict[str, str | None]:
    """Each model's archive version (None where the archive cannot be read)."""
    # TorchServe names a worker thread W-PORT-NAME_VERSION with the archive's version (not the snapshot key's).
    versions: dict[str, str | None] = {}
    for entry in entries:
        try:
            versions[entry.name] = read_archive(layout / MODEL_STORE / str(entry.mar_name)).version
        except ArchiveError:
            versions[entry.name] = None
    return versions
