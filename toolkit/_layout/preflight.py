"""check(): the preflight of a layout, for layouts written by mar-build or by hand.

Every known way a layout breaks KServe's kserve-torchserve predictor that can be seen in its files is reported with
its fix, all at once; each check names what it guards against (KServe's wrapper is pytorch/serve
``kubernetes/kserve/kserve_wrapper/__main__.py``, as in the runtime's default 0.9.0 image; the rest is TorchServe's).
Errors are what stops the predictor pod from becoming ready or answering correctly; warnings are what will surprise.
"""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlsplit

from .._errors import ArchiveError, SpecError
from .._metrics import metrics_findings
from .._pod import image_facts
from .._spec import RUNTIMES, Runtime
from .compat import check_compat
from .exposure import check_exposure
from .overrides import check_overrides
from .properties import find_entry, truthy
from .read import Layout, SnapshotEntry, read_archive, read_layout
from .report import CheckReport, to_int
from .report import Problem as Problem  # re-exported: the room's __init__ takes it from here

# Keys KServe's wrapper (kserve_wrapper/__main__.py in the 0.9.0 image) reads with config[...]: a KeyError if absent.
WRAPPER_KEYS = ("inference_address", "management_address", "grpc_inference_port", "model_store", "model_snapshot")
SNAPSHOT_KEYS = ("defaultVersion", "marName", "minWorkers", "maxWorkers", "batchSize", "maxBatchDelay")
POD_MODEL_STORE = "/mnt/models/model-store"
POD_INFERENCE_PORT = 8085
WRAPPER_HTTP_PORT = 8080
WRAPPER_GRPC_PORT = 8081
TS_DEFAULT_MAX_REQUEST = 6553500  # TorchServe's max_request_size when config.properties does not set it

def check(
    path: str | Path, *, runtime: Runtime = "torchserve", runtime_version: str | None = None, pod: bool = True,
    probe: bool = True,
) -> CheckReport:
    """Preflight a layout folder for ``runtime`` in the image ``runtime_version`` (a pytorch/torchserve-kfs tag;
    None: the runtime's default, 0.9.0). Returns the report; raises LayoutError only when ``path`` is not a layout.

    The python runtime checks no tokens and runs a stock envelope per request (so batches with it are served
    right): those two TorchServe rules do not apply to it; a requirements file left uninstalled
    (install_py_dep_per_model off) is only a warning for it, since its image (`mar-build image`) carries them.
    ``pod``: also the rules of the predictor pod's image (what it lacks, what it exposes; False for a local serve,
    which is not the pod). ``probe``: load each transformers folder with the image's transformers and tokenizers (a
    venv on the image's Python, made once and cached; see toolkit/_pod).
    """
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime must be one of {', '.join(RUNTIMES)}, not {runtime!r}")
    layout = read_layout(path)
    report = CheckReport(layout.path, models=layout.model_names())
    for problem in layout.problems:
        report._error(problem, "write model_snapshot as one line of JSON: {\"name\":\"startup.cfg\",...}")
    _check_keys(layout, report)
    _check_ports(layout, report)
    if runtime == "torchserve":
        _check_envelope_and_auth(layout, report)
    else:
        _check_envelope_names(layout, report)
    _check_snapshot(layout, report, runtime)
    _check_comments(layout, report)
    present = {p.name: p for p in layout.archives}
    entries = [(e, present[e.mar_name]) for e in layout.entries if e.mar_name in present]
    check_overrides(entries, report)
    report.problems += [Problem(level, message, fix) for level, message, fix in metrics_findings(layout, runtime)]
    if pod:
        _check_pod(layout, entries, report, runtime, runtime_version, probe)
    return report


def _check_pod(layout: Layout, entries: list[tuple[SnapshotEntry, Path]], report: CheckReport, runtime: Runtime,
               tag: str | None, probe: bool) -> None:
    """What the pod's image must have and must not expose (compat.py, exposure.py)."""
    try:
        facts = image_facts(runtime, tag)
    except SpecError as exc:
        report._warn(f"{exc.message}: the image compatibility rules were not run", exc.hint or "")
        return
    check_exposure(layout.properties, report, facts)
    check_compat({e.name: mar for e, mar in entries}, layout.properties, report, facts, probe=probe)


def _check_keys(layout: Layout, report: CheckReport) -> None:
    props = layout.properties
    for key in WRAPPER_KEYS:
        if key not in props:
            report._error(
                f"{key} is missing: KServe's wrapper reads it and fails to start without it (KeyError)",
                f"add {key}=" + _KEY_EXAMPLES[key],
            )
    store = props.get("model_store")
    if store is not None and store.rstrip("/") != POD_MODEL_STORE:
        report._error(
            f"model_store={store}: the predictor pod has the archives in {POD_MODEL_STORE}",
            f"set model_store={POD_MODEL_STORE} (storageUri must point at the folder that holds model-store/)",
        )
    if not layout.model_store.is_dir():
        report._error(f"{layout.model_store} is missing", "put the .mar files in LAYOUT/model-store/")
    if "metrics_format" in props:
        report._warn(
            "metrics_format is a dead key: TorchServe ignores it (KServe's samples still carry it)",
            "remove it and set metrics_mode=prometheus",
        )
    if props.get("metrics_mode") != "prometheus":
        report._warn(
            "metrics_mode is not prometheus: /metrics on the metrics port stays empty, though the runtime's "
            "annotations tell Prometheus to scrape it",
            "set metrics_mode=prometheus",
        )
    if "model_snapshot" in props and _snapshot_spans_lines(layout.config_text):
        report._error(
            "model_snapshot continues over several lines: KServe's wrapper reads config.properties line by "
            "line and gets broken JSON",
            "write model_snapshot as one line of JSON",
        )


_KEY_EXAMPLES = {
    "inference_address": "http://0.0.0.0:8085",
    "management_address": "http://0.0.0.0:8085",
    "grpc_inference_port": "7070",
    "model_store": POD_MODEL_STORE,
    "model_snapshot": '{"name":"startup.cfg","modelCount":1,"models":{...}} (one line)',
}


def _snapshot_spans_lines(text: str) -> bool:
    entry = find_entry(text, "model_snapshot")
    return entry is not None and entry.continued


def _port_of(value: str) -> int | None:
    try:
        return urlsplit(value if "//" in value else "//" + value).port
    except ValueError:
        return None


def _check_ports(layout: Layout, report: CheckReport) -> None:
    props = layout.properties
    ports: dict[str, int] = {}
    for key in ("inference_address", "management_address", "metrics_address"):
        if key in props:
            port = _port_of(props[key])
            if port is None:
                report._error(f"{key}={props[key]} has no port", f"write it as http://0.0.0.0:PORT, e.g. {key}=http://0.0.0.0:8085")
            else:
                ports[key] = port
    for key in ("grpc_inference_port", "grpc_management_port"):
        if key in props:
            try:
                ports[key] = int(props[key])
            except ValueError:
                report._error(f"{key}={props[key]} is not a port number", f"e.g. {key}=7070")
    for key, port in ports.items():
        if port == WRAPPER_HTTP_PORT:
            report._error(
                f"{key} uses port {port}, which KServe's wrapper listens on (HTTP) in the same pod",
                "use 8085 for inference and management (and 8082 for metrics)",
            )
        elif port == WRAPPER_GRPC_PORT:
            report._warn(
                f"{key} uses port {port}, the gRPC port of KServe's wrapper in the same pod; newer wrappers fail "
                "to start beside it",
                "use 8085 for inference and management",
            )
    if ports.get("inference_address") not in (None, POD_INFERENCE_PORT, WRAPPER_HTTP_PORT, WRAPPER_GRPC_PORT):
        report._warn(
            f"inference_address uses port {ports['inference_address']}; the wrapper in KServe's default 0.9.0 image "
            f"forwards predictions to port {POD_INFERENCE_PORT} whatever this file says",
            f"use inference_address=http://0.0.0.0:{POD_INFERENCE_PORT}",
        )
    if ports.get("metrics_address") is not None and ports.get("metrics_address") != 8082:
        report._warn(
            f"metrics_address uses port {ports['metrics_address']}; the runtime's Prometheus annotations scrape 8082",
            "use metrics_address=http://0.0.0.0:8082",
        )
    by_port: dict[int, list[str]] = {}
    for key, port in ports.items():
        by_port.setdefault(port, []).append(key)
    for port, keys in by_port.items():
        shared = set(keys) - {"inference_address", "management_address"}
        if len(keys) > 1 and shared:
            report._error(f"{' and '.join(keys)} share port {port}", "give each of them its own port")


def _check_envelope_names(layout: Layout, report: CheckReport) -> None:
    envelope = layout.properties.get("service_envelope")
    if envelope is not None and envelope.strip().lower() == "kfserving":
        report._error(
            "service_envelope=kfserving names an envelope TorchServe no longer has (renamed kserve)",
            "remove service_envelope (mar-build handlers read the v1 and v2 envelopes themselves)",
        )


def _check_envelope_and_auth(layout: Layout, report: CheckReport) -> None:
    props = layout.properties
    envelope = props.get("service_envelope")
    _check_envelope_names(layout, report)
    # KServe's runtime sets TS_SERVICE_ENVELOPE=kserve; TorchServe honours it only with enable_envvars_config=true.
    stock_envelope = truthy(props.get("enable_envvars_config")) or envelope is not None
    if stock_envelope:
        batched = [e for e in layout.entries if to_int(e.settings.get("batchSize"), 1) > 1]
        for entry in batched:
            report._error(
                f"model {entry.name!r} has batchSize {entry.settings.get('batchSize')} with the stock kserve "
                "envelope on (enable_envvars_config=true or service_envelope): the envelope parses only the "
                "first request of a batch, so concurrent requests fail with 503",
                "set enable_envvars_config=false and drop service_envelope, with a handler that reads "
                "{\"instances\": [...]} itself (every mar-build handler does); or batchSize 1",
            )
    if not truthy(props.get("disable_token_authorization")):
        report._error(
            "token authorization is left on: TorchServe 0.11.1 and newer check tokens by default, KServe's "
            "wrapper sends none, its readiness polls get 400 and the pod never becomes ready",
            "add disable_token_authorization=true (TorchServe 0.9.0, the runtime's default image, ignores it)",
        )


def _check_snapshot(layout: Layout, report: CheckReport, runtime: Runtime) -> None:
    snapshot = layout.snapshot
    if snapshot is None:
        return
    raw = layout.properties.get("model_snapshot", "")
    duplicates = _duplicate_keys(raw)
    for name in duplicates:
        report._error(f"model_snapshot lists model {name!r} twice; TorchServe keeps only one",
                      "give each model its own name")
    count = snapshot.get("modelCount")
    listed = snapshot.get("models")
    models: dict[str, object] = listed if isinstance(listed, dict) else {}
    if count is not None and count != len(models):
        report._error(f"model_snapshot modelCount is {count} but it lists {len(models)} model(s)",
                      f"set \"modelCount\":{len(models)}")
    archives = {p.name: p for p in layout.archives}
    referenced: set[str] = set()
    store = layout.model_store
    no_archive_dirs = [p.name for p in store.iterdir() if p.is_dir()] if store.is_dir() else []
    for folder in no_archive_dirs:
        report._warn(
            f"model-store/{folder}/ is a folder: KServe's 0.9.0 wrapper only recognises *.mar files",
            "build a .mar archive (mar-build build) instead of archive-format no-archive",
        )
    for entry in layout.entries:
        missing = [k for k in SNAPSHOT_KEYS if k not in entry.settings]
        if missing:
            report._error(f"model {entry.name!r}: model_snapshot entry lacks {', '.join(missing)}",
                          "TorchServe needs defaultVersion, marName, minWorkers, maxWorkers, batchSize, maxBatchDelay")
        mar = entry.mar_name
        if mar is None:
            continue
        referenced.add(mar)
        if mar not in archives:
            near = [n for n in archives if n.removesuffix(".mar") == entry.name]
            report._error(
                f"model {entry.name!r}: marName {mar} is not in model-store/ (TorchServe fails at startup)",
                f"the archive there is {near[0]}: set \"marName\":\"{near[0]}\"" if near
                else f"put {mar} in model-store/, or fix marName",
            )
            continue
        _check_archive(entry.name, entry.version, archives[mar], layout, report, runtime)
    for name in sorted(set(archives) - referenced):
        report._warn(f"model-store/{name} is not in model_snapshot, so it is never loaded",
                     "add it to model_snapshot (mar-build build -o LAYOUT does), or remove it")
    if not layout.entries and "model_snapshot" in layout.properties and not layout.problems:
        report._error("model_snapshot lists no models", "build a model into this layout")


def _duplicate_keys(raw: str) -> list[str]:
    duplicates: list[str] = []

    def hook(pairs: list[tuple[str, object]]) -> dict[str, object]:
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                duplicates.append(key)
            seen.add(key)
        return dict(pairs)

    try:
        snapshot = json.loads(raw, object_pairs_hook=hook)
    except json.JSONDecodeError:
        return []
    models = snapshot.get("models") if isinstance(snapshot, dict) else None
    names = set(models) if isinstance(models, dict) else set()
    return [d for d in duplicates if d in names]


def _check_archive(name: str, version: str, mar: Path, layout: Layout, report: CheckReport,
                   runtime: Runtime) -> None:
    try:
        info = read_archive(mar)
    except ArchiveError as exc:
        report._error(f"model {name!r}: {exc.message}", exc.hint or "")
        return
    url_name = f"/v1/models/{name}:predict"
    if info.model_name and info.model_name != name:
        report._warn(
            f"model {name!r}: the archive calls itself {info.model_name!r}, but the name in the URL is the "
            f"model_snapshot key: clients must call {url_name}",
            f"rename the snapshot key to {info.model_name!r} if clients expect that name",
        )
    if info.version and version != info.version:
        report._warn(
            f"model {name!r}: model_snapshot says version {version}, the archive {info.version}; "
            "TorchServe uses the archive's",
            f"use \"{info.version}\" as the version key",
        )
    props = layout.properties
    _check_requirements(name, info.manifest.get("model", {}).get("requirementsFile"), props, report, runtime)
    task = (info.build_info or {}).get("task")
    max_request = to_int(props.get("max_request_size"), TS_DEFAULT_MAX_REQUEST)
    if task == "image-classification" and max_request <= TS_DEFAULT_MAX_REQUEST:
        report._warn(
            f"model {name!r} takes base64 images and max_request_size is TorchServe's 6553500 bytes: a few "
            "images per request answer 413",
            "set max_request_size=67108864 (and max_response_size)",
        )
    if info.build_info is not None and truthy(props.get("enable_envvars_config")):
        report._warn(
            f"model {name!r} was built by mar-build, whose handlers read the v1 and v2 envelopes themselves, but "
            "enable_envvars_config=true lets KServe's TS_SERVICE_ENVELOPE wrap them in the stock envelope",
            "set enable_envvars_config=false",
        )


def _check_requirements(name: str, requirements: object, props: dict[str, str], report: CheckReport,
                        runtime: Runtime) -> None:
    """An archive's requirements file with install_py_dep_per_model off: both runtimes install nothing then."""
    if not requirements or truthy(props.get("install_py_dep_per_model")):
        return  # on: both install it at load (compat.py warns that the pod then needs a package index)
    if runtime == "torchserve" and "install_py_dep_per_model" not in props:
        report._error(
            f"model {name!r} packages {requirements} but install_py_dep_per_model is not set (TorchServe's default "
            "is false): the worker will not install it and fails to import what it needs",
            "add install_py_dep_per_model=true (the pod then needs a package index), or bake the packages into "
            "an image (mar-build image LAYOUT -o DIR, which sets install_py_dep_per_model=false)",
        )
        return
    if runtime == "torchserve":  # set false on purpose, as `mar-build image` does for the image it builds
        report._warn(
            f"model {name!r} packages {requirements} and install_py_dep_per_model=false: TorchServe installs "
            "nothing, so the pod's image must have those packages (an image mar-build image built has them; "
            "the stock pytorch/torchserve-kfs image does not)",
            "render with --image IMAGE (the image mar-build image built), or set install_py_dep_per_model=true",
        )
        return
    # The python runtime's image is made for the layout by `mar-build image`, which bakes the requirements in and
    # turns the property off: then this is as it should be, and the runtime only warns at load.
    report._warn(
        f"model {name!r} packages {requirements} but install_py_dep_per_model is not true: the python runtime "
        "installs nothing (it logs a warning at load), so its handler fails to import any of those packages its "
        "environment lacks",
        "run it in an image that has them (mar-build image LAYOUT -o DIR --runtime python bakes them in), or add "
        "install_py_dep_per_model=true: the runtime then pip-installs it once per unpacked model, from a package "
        "index or PIP_FIND_LINKS",
    )


def _check_comments(layout: Layout, report: CheckReport) -> None:
    for number, line in enumerate(layout.config_text.splitlines(), 1):
        stripped = line.lstrip()
        if stripped[:1] in ("#", "!") and "=" in stripped:
            report._warn(
                f"config.properties line {number} is a comment with '=' in it: the wrapper in KServe's default "
                "0.9.0 image reads such lines as keys",
                "remove the '=' from the comment",
            )
