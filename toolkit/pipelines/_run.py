"""What each pipeline step does, in plain Python (no kfp here): run the `mar-build` command and read its --json.

The kfp components (``_components.py``) are thin wrappers that call these functions inside the step's container,
so a step's log is the command's own output (its live deploy view, its errors with their hints) and a failing
command fails the step with its message. ``python -m toolkit`` is the `mar-build` command of the Python that runs
the step: the image's in the cluster, this one under ``kfp.local``.
"""

from __future__ import annotations

import json
import logging
import shlex
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

import yaml

from .._errors import PredictError, SpecError, ToolkitError
from .._files import write_atomic
from .._names import suggest_model_name
from .._source import is_model_uri, parse_model_uri

log = logging.getLogger("toolkit.pipelines")

# How much of a failed command's stderr goes into the step's error (the whole of it is in the step's log already).
ERROR_TAIL_LINES = 40


def mar_build(*args: str) -> Any:
    """Run ``mar-build ARGS --json``; return its parsed stdout. stderr streams into this step's log as it comes.

    Raises ToolkitError naming the command and carrying the end of its stderr (the error, its hint, a deploy's
    diagnosis) when it exits non-zero.
    """
    command = [sys.executable, "-m", "toolkit", *args, "--json"]
    shown = "mar-build " + " ".join(shlex.quote(a) for a in (*args, "--json"))
    print(f"$ {shown}", file=sys.stderr, flush=True)
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    echo = threading.Thread(target=_echo, args=(process.stderr, lines), daemon=True)
    echo.start()
    stdout = process.stdout.read() if process.stdout is not None else ""
    code = process.wait()
    echo.join()
    if code != 0:
        tail = "".join(lines[-ERROR_TAIL_LINES:]).rstrip()
        raise ToolkitError(f"`{shown}` failed (exit status {code}):\n{tail}",
                           hint="the step's log holds the command's whole output")
    return json.loads(stdout)


def _echo(stream: Any, lines: list[str]) -> None:
    for line in stream:
        lines.append(line)
        sys.stderr.write(line)
        sys.stderr.flush()


def build_step(model_uri: str, layout: str, *, name: str = "", task: str = "", version: str = "",
               spec: str = "") -> tuple[str, str]:
    """Build ``model_uri`` into the layout folder ``layout``; return (model name, version).

    ``model_uri`` is a folder holding a mar.yaml (built as it says; ``name``/``task``/``version`` override it), or
    anything mar.yaml's ``model`` takes: a model folder or file, ``models:/NAME/VERSION``, ``models:/NAME@ALIAS``,
    ``runs:/RUN/PATH``. For those, ``spec`` is more mar.yaml as YAML text (options, class_names, serving, ...),
    and the step writes the mar.yaml: ``model`` is ``model_uri``, ``name``/``task``/``version`` as given (the
    name defaults to a registered model's own). Raises SpecError for a bad ``spec`` or a model without a name.
    """
    overrides = {"name": name, "task": task, "version": version}
    folder = Path(model_uri)
    if folder.is_dir() and (folder / "mar.yaml").is_file():
        if spec:
            raise SpecError(f"{model_uri} has its own mar.yaml; the step's spec would be ignored",
                            hint="leave spec empty, or put those keys into the folder's mar.yaml")
        flags = [a for key, value in overrides.items() if value for a in (f"--{key}", value)]
        results = mar_build("build", str(folder), "-o", layout, *flags)
    else:
        with tempfile.TemporaryDirectory(prefix="mar-build-spec-") as tmp:
            data = _spec_data(spec)
            local = Path(model_uri)
            data["model"] = str(local.resolve()) if local.exists() else model_uri
            data.update({key: value for key, value in overrides.items() if value})
            if not data.get("name"):
                data["name"] = _registered_name(model_uri)
            write_atomic(Path(tmp) / "mar.yaml", yaml.safe_dump(data, sort_keys=False))
            results = mar_build("build", tmp, "-o", layout)
    last = results[-1]
    return str(last["name"]), str(last["version"])


def _registered_name(model_uri: str) -> str:
    """The model name of a models:/NAME/... URI, made valid (the URL name); SpecError for anything else."""
    registered = parse_model_uri(model_uri).name if is_model_uri(model_uri) else None
    if not registered:
        raise SpecError(f"the build step needs a model name for {model_uri}",
                        hint="pass the step's name (the pipeline's model_name): the name in /v1/models/NAME:predict")
    return suggest_model_name(registered)


def _spec_data(spec: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(spec) if spec.strip() else {}
    except yaml.YAMLError as exc:
        raise SpecError(f"the step's spec is not YAML: {exc}", hint="give mar.yaml keys, e.g. 'task: tensor'") from exc
    if not isinstance(data, dict):
        raise SpecError(f"the step's spec must be a mapping of mar.yaml keys, got {type(data).__name__}",
                        hint="e.g. 'task: text-classification\\noptions: {max_length: 128}'")
    if "model" in data:
        raise SpecError("the step's spec names a model; the step's model_uri is the model",
                        hint="leave 'model' out of spec")
    return data


def stage_step(layout: str, storage_uri: str, *, s3_endpoint: str = "", mount: str = "") -> str:
    """Stage the layout to ``storage_uri`` (``s3://``, ``pvc://`` with ``mount``, ``oci://``); return the storageUri."""
    flags = [*(["--s3-endpoint", s3_endpoint] if s3_endpoint else []), *(["--mount", mount] if mount else [])]
    result = mar_build("stage", layout, storage_uri, *flags)
    return str(result["storage_uri"])


def deploy_step(layout: str, manifests: str, *, name: str, storage_uri: str, namespace: str = "",
                s3_endpoint: str = "", service_account: str = "", render_args: str = "",
                wait_timeout: float = 600) -> tuple[str, str]:
    """Render the InferenceService for the layout into the file ``manifests``, apply it and wait until it is ready;
    return (url, address). A not-ready InferenceService fails with deploy's diagnosis.

    For an ``s3://`` storageUri the predictor needs the bucket's keys: ``service_account`` names one that has them,
    else the step renders an S3 Secret and ServiceAccount from the AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY of
    its own environment (the Secret goes straight to the cluster, never into ``manifests``). ``s3_endpoint`` is the
    endpoint as the pod reaches it. ``render_args``: more `mar-build render` options, as one shell-quoted string.
    """
    where = ["-n", namespace] if namespace else []
    extra = shlex.split(render_args)
    with tempfile.TemporaryDirectory(prefix="mar-build-deploy-") as tmp:
        secret = Path(tmp) / "s3-secret.yaml"
        s3: list[str] = []
        if service_account:
            s3 = ["--service-account", service_account]
        elif storage_uri.startswith("s3://"):
            s3 = [*(["--s3-endpoint", s3_endpoint] if s3_endpoint else []), "--s3-secret-file", str(secret)]
        mar_build("render", layout, "--name", name, "--storage-uri", storage_uri, *where, *s3, *extra,
                  "-o", manifests)
        sources = [manifests, *([str(secret)] if secret.exists() else [])]
        result = mar_build("deploy", *sources, *where, "--wait", "--wait-timeout", str(wait_timeout))
    return str(result.get("url") or ""), str(result.get("address") or "")


def predict_step(url: str, model: str, *, instances: str = "", host: str = "", expected: str = "",
                 request_timeout: float = 30) -> str:
    """Send ``instances`` (a JSON list) to the model at ``url``; return the predictions as JSON text.

    No instances: nothing is sent (returns ""). ``expected`` (JSON) fails the step unless the predictions equal it.
    """
    if not instances.strip():
        log.warning("no smoke instances given: the smoke predict step sends nothing")
        return ""
    flags = [*(["--host", host] if host else []), "--request-timeout", str(request_timeout)]
    predictions = mar_build("predict", url, "-m", model, "--instances", instances, *flags)["predictions"]
    if expected.strip() and predictions != json.loads(expected):
        raise PredictError(f"model {model} at {url} answered {json.dumps(predictions)}, expected {expected}",
                           hint="the model answers, but not what the pipeline expects: check the model version")
    return json.dumps(predictions)
