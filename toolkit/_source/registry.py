"""Resolving an MLflow model URI with the MLflow client: which version, where its files are, and the download.

mlflow is imported by the functions here, never at module import: ``import toolkit`` stays light. The client reads
its own configuration (MLFLOW_TRACKING_URI, MLFLOW_S3_ENDPOINT_URL, the AWS_* variables, MLFLOW_TRACKING_TOKEN...).
Its HTTP retries are bounded while resolving (by default it retries for minutes against a server that is down);
a variable the user set keeps their value.
"""

from __future__ import annotations

import difflib
import json
import logging
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from .._errors import SpecError
from .flavors import SUPPORTED_FLAVORS, Servable, servable
from .uri import ModelUri, parse_model_uri

log = logging.getLogger("toolkit.source")

# 3 tries, ~3 s in all against a closed port; 30 s for a server that accepted the connection to answer
BOUNDED_HTTP = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "0.5",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
}
_SECRET_VARIABLES = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ACCESS_KEY_ID", "MLFLOW_TRACKING_TOKEN",
                     "MLFLOW_TRACKING_PASSWORD")
_NOT_FOUND = ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE")


@dataclass(frozen=True)
class Resolved:
    """A downloaded model made servable: what build() takes as ``model`` (and ``model_file``/``model_class``),
    the MLflow flavor it came as, and where it came from (recorded in the archive)."""

    model: Path
    flavor: str
    model_file: Path | None = None
    model_class: str | None = None
    provenance: dict[str, Any] = field(default_factory=dict)


def resolve(uri: str | ModelUri, workdir: Path) -> Resolved:
    """Resolve ``uri`` through the MLflow client, download the model under ``workdir`` and make it servable.

    Raises SpecError for an unknown name, version, alias or run, a tracking server that does not answer, artifacts
    that cannot be downloaded (never printing a credential) and a flavor mar-build cannot serve.
    """
    parsed = uri if isinstance(uri, ModelUri) else parse_model_uri(uri)
    with bounded_http():
        import mlflow
        from mlflow.exceptions import MlflowException

        tracking = _tracking_uri(mlflow)
        client = mlflow.MlflowClient()
        try:
            provenance, artifact_uri = _locate(client, parsed)
        except MlflowException as exc:
            raise _client_error(exc, parsed, tracking, client) from None
        provenance["tracking_uri"] = tracking
        local = _download(mlflow, artifact_uri, workdir / "download", parsed)
        result = _servable(local, workdir, parsed)
    provenance.update(result.provenance)
    log.info("resolved %s to %s (flavor %s)", parsed.uri, local, result.flavor)
    return Resolved(result.model, result.flavor, result.model_file, result.model_class, provenance)


@contextmanager
def bounded_http() -> Iterator[None]:
    """MLflow's HTTP retry settings bounded (BOUNDED_HTTP) for the duration, where the user set none."""
    added = [k for k in BOUNDED_HTTP if k not in os.environ]
    os.environ.update({k: BOUNDED_HTTP[k] for k in added})
    try:
        yield
    finally:
        for k in added:
            os.environ.pop(k, None)


def redact_uri(uri: str) -> str:
    """A URI without the user and password it may carry (http://user:pass@host -> http://***@host)."""
    parts = urlsplit(uri)
    if parts.username is None and parts.password is None:
        return uri
    host = parts.hostname or ""
    netloc = f"***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def redact(text: str) -> str:
    """``text`` with the value of every credential variable set here replaced by ***."""
    for name in _SECRET_VARIABLES:
        value = os.environ.get(name)
        if value and len(value) >= 4:
            text = text.replace(value, "***")
    return re.sub(r"(?<=://)[^/@\s]+:[^/@\s]+@", "***@", text)


def _tracking_uri(mlflow: Any) -> str:
    if not os.environ.get("MLFLOW_TRACKING_URI") and not mlflow.tracking.is_tracking_uri_set():
        raise SpecError(
            "MLFLOW_TRACKING_URI is not set: which MLflow tracking server holds the model?", key="model",
            hint="export MLFLOW_TRACKING_URI=http://mlflow.example:5000 (and MLFLOW_S3_ENDPOINT_URL, "
                 "AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY for artifacts in MinIO or S3)",
        )
    return redact_uri(str(mlflow.get_tracking_uri()))


def _locate(client: Any, uri: ModelUri) -> tuple[dict[str, Any], str]:
    """(what the registry says of the model, the artifact URI to download)."""
    record: dict[str, Any] = uri.to_dict()
    if uri.kind == "run":
        run = client.get_run(uri.run_id)
        record["experiment_id"] = run.info.experiment_id
        return record, f"runs:/{uri.run_id}/{uri.path}"
    if uri.kind == "alias":
        version = client.get_model_version_by_alias(uri.name, uri.alias)
    else:
        version = client.get_model_version(uri.name, uri.version)
    record.update({
        "registered_model": version.name, "version": str(version.version), "run_id": version.run_id,
        "source": version.source,
    })
    return record, client.get_model_version_download_uri(version.name, version.version)


def _client_error(exc: Any, uri: ModelUri, tracking: str, client: Any) -> SpecError:
    code = getattr(exc, "error_code", None)
    if code in _NOT_FOUND:
        return _not_found(uri, tracking, client)
    text = redact(str(exc))
    if "API request to" in text or "Max retries exceeded" in text:
        return SpecError(
            f"the MLflow tracking server {tracking} does not answer ({_cause(text)})", key="model",
            hint="check MLFLOW_TRACKING_URI and that the server runs (curl $MLFLOW_TRACKING_URI/health)",
        )
    return SpecError(f"MLflow could not resolve {uri.uri}: {text[:400]}", key="model")


def _cause(text: str) -> str:
    for marker, cause in (("Connection refused", "connection refused"), ("timed out", "timed out"),
                          ("Name or service not known", "unknown host"), ("nodename nor servname", "unknown host")):
        if marker in text:
            return cause
    return text[:200]


def _not_found(uri: ModelUri, tracking: str, client: Any) -> SpecError:
    """Which part was not found (the name, the version, the alias, the run), with what the registry does hold."""
    from mlflow.exceptions import MlflowException

    where = f"in the MLflow registry at {tracking}"
    if uri.kind == "run":
        return SpecError(f"run {uri.run_id} does not exist at {tracking}", key="model",
                         hint="copy the run id from the run's page, or use models:/NAME/VERSION")
    try:
        model = client.get_registered_model(uri.name)
    except MlflowException:
        names = [m.name for m in client.search_registered_models(max_results=1000)]
        close = difflib.get_close_matches(str(uri.name), names, n=1, cutoff=0.6)
        hint = f"did you mean {close[0]!r}?" if close else (
            f"registered models: {', '.join(sorted(names)[:20])}" if names else "the registry has no models")
        return SpecError(f"no registered model named {uri.name!r} {where}", key="model", hint=hint)
    versions = sorted((int(v.version) for v in client.search_model_versions(f"name='{uri.name}'")), reverse=True)
    listed = ", ".join(str(v) for v in versions[:20]) or "none"
    aliases = dict(getattr(model, "aliases", None) or {})
    if uri.kind == "alias":
        known = ", ".join(f"@{a} -> {v}" for a, v in sorted(aliases.items())) or "none"
        return SpecError(f"model {uri.name!r} has no alias {uri.alias!r} {where}", key="model",
                         hint=f"its aliases: {known}; its versions: {listed}")
    return SpecError(f"model {uri.name!r} has no version {uri.version} {where}", key="model",
                     hint=f"its versions: {listed}" + (f"; aliases: {', '.join('@' + a for a in aliases)}"
                                                      if aliases else ""))


def _download(mlflow: Any, artifact_uri: str, target: Path, uri: ModelUri) -> Path:
    target.mkdir(parents=True, exist_ok=True)
    try:
        return Path(mlflow.artifacts.download_artifacts(artifact_uri=artifact_uri, dst_path=str(target)))
    except Exception as exc:  # boto3's, MLflow's, the network's: each said once, credentials redacted
        where = redact_uri(artifact_uri)
        endpoint = os.environ.get("MLFLOW_S3_ENDPOINT_URL")
        hint = ("check MLFLOW_S3_ENDPOINT_URL" + (f" ({redact_uri(endpoint)})" if endpoint else " (not set)")
                + " and the credentials in AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (their values are not shown)")
        raise SpecError(
            f"the model files of {uri.uri} cannot be downloaded from {where}: {type(exc).__name__}: "
            f"{redact(str(exc))[:300]}", key="model", hint=hint,
        ) from None


def _servable(local: Path, workdir: Path, uri: ModelUri) -> Servable:
    if not (local / "MLmodel").is_file():
        raise SpecError(
            f"{uri.uri} holds no MLmodel file: not an MLflow model", key="model",
            hint="point at the folder log_model wrote (runs:/RUN_ID/model), or register the model and use models:/",
        )
    from mlflow.models import Model

    meta = Model.load(str(local / "MLmodel"))
    flavors = [f for f in SUPPORTED_FLAVORS if f in meta.flavors]
    if not flavors:
        raise SpecError(
            f"{uri.uri} is an MLflow model of flavor {', '.join(sorted(meta.flavors))}, which mar-build cannot "
            f"serve", key="model",
            hint=f"log it with one of the flavors mar-build serves: {', '.join(SUPPORTED_FLAVORS)} "
                 "(mlflow.transformers.log_model or mlflow.pytorch.log_model)",
        )
    result = servable(flavors[0], local, meta, workdir / "servable", uri.uri)
    result.provenance.update({"flavor": flavors[0], "signature": _signature(meta),
                              "mlflow_version": getattr(meta, "mlflow_version", None)})
    if getattr(meta, "model_id", None):
        result.provenance["model_id"] = meta.model_id
    return result


def _signature(meta: Any) -> dict[str, Any] | None:
    """The signature as JSON values ({"inputs": [...], "outputs": [...]}), not the strings MLmodel holds."""
    if meta.signature is None:
        return None
    return {k: json.loads(v) if isinstance(v, str) else v for k, v in meta.signature.to_dict().items()
            if v is not None}
