"""mar.yaml's settings as dataclasses: the model spec and its sections (serving, server, kserve, resources).

Parsing and checking live in ``parse``; these are the typed values the other rooms take.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

SPEC_FILENAME = "mar.yaml"

TASKS = (
    "text-classification",
    "token-classification",
    "embeddings",
    "image-classification",
    "tensor",
    "custom",
)


MIB = 1024 * 1024

# KServe's deploymentMode annotation values (Knative and Standard are the newer names of the first two).
DEPLOYMENT_MODES = ("Serverless", "RawDeployment", "Knative", "Standard")

# What serves a layout: KServe's TorchServe runtime (TorchServe behind KServe's wrapper), or mar-build's own
# (kserve's ModelServer with the handlers in process, toolkit/_runtime). One list for serve, check, render, deploy.
Runtime = Literal["torchserve", "python"]
RUNTIMES: tuple[Runtime, ...] = ("torchserve", "python")


@dataclass(frozen=True)
class ServingSettings:
    """Per-model TorchServe settings: one model_snapshot entry."""

    min_workers: int = 1
    max_workers: int = 1
    batch_size: int = 16
    # milliseconds. benchmarks/defaults.py: at 32 clients 5 ms fills batches of ~15 as 20 ms does (throughput within
    # the noise), while one client waits ~20 ms less (p50 31-38 ms against 51-56 ms)
    max_batch_delay: int = 5
    response_timeout: int = 120  # seconds
    startup_timeout: int = 120  # seconds


@dataclass(frozen=True)
class ServerSettings:
    """Layout-wide config.properties settings (shared by every model in the layout).

    None means "TorchServe's default" (the key is not written), except the size limits, which get a per-task
    default large enough for the task's payloads (see ``default_sizes``).
    """

    netty_threads: int | None = None
    job_queue_size: int | None = None
    max_request_size: int | None = None
    max_response_size: int | None = None
    inference_port: int = 8085
    management_port: int = 8085
    metrics_port: int = 8082
    grpc_inference_port: int = 7070
    grpc_management_port: int = 7071


@dataclass(frozen=True)
class Resources:
    requests: dict[str, str] = field(default_factory=lambda: {"cpu": "1", "memory": "2Gi"})
    limits: dict[str, str] = field(default_factory=lambda: {"cpu": "1", "memory": "2Gi"})


@dataclass(frozen=True)
class KServeSettings:
    """Defaults for render/deploy; every field can be overridden by a flag there."""

    name: str | None = None  # the InferenceService name; defaults to the model name made DNS-1035
    namespace: str | None = None
    storage_uri: str | None = None
    protocol: str = "v1"
    runtime_version: str | None = None  # the pytorch/torchserve-kfs tag; None keeps the runtime's default
    resources: Resources = field(default_factory=Resources)
    gpu: int = 0
    min_replicas: int | None = None
    max_replicas: int | None = None
    scale_target: int | None = None
    scale_metric: str | None = None
    service_account: str | None = None
    deployment_mode: str | None = None  # one of DEPLOYMENT_MODES
    timeout: int | None = None  # seconds, predictor component timeout
    canary_traffic_percent: int | None = None
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelSpec:
    """One model to archive: what mar.yaml says, with CLI overrides applied and paths resolved."""

    name: str
    task: str
    version: str = "1.0"
    model: Path | None = None  # a folder (HF model, state_dict, TorchScript) or a single weights file
    # or an MLflow model URI (models:/NAME/VERSION, models:/NAME@ALIAS, runs:/RUN/PATH), resolved when building
    model_uri: str | None = None
    handler: Path | None = None  # custom task: the user's handler.py
    model_file: Path | None = None  # tensor task with an eager module: the .py that defines the nn.Module
    model_class: str | None = None  # tensor task: the class name in model_file when it defines several
    labels: dict[str, str] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    class_names: list[str] | None = None
    requirements: list[str] = field(default_factory=list)
    pin_requirements: bool = False
    extra_files: list[Path] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)  # handler options, e.g. max_length, top_k
    serving: ServingSettings = field(default_factory=ServingSettings)
    server: ServerSettings = field(default_factory=ServerSettings)
    kserve: KServeSettings = field(default_factory=KServeSettings)
    source: Path | None = None  # the mar.yaml this came from
    # where a model_uri resolved to (registered name, version, run id, signature...), set by build()
    provenance: dict[str, Any] | None = None

    def default_sizes(self) -> tuple[int, int]:
        """(max_request_size, max_response_size) in bytes for this task, unless the spec sets them.

        TorchServe's 6553500-byte default answers 413 to a handful of base64 images, and a long embeddings
        answer exceeds it too; text and tensors get 16 MiB, images and embeddings 64 MiB where it matters.
        """
        request = 64 * MIB if self.task in ("image-classification", "custom") else 16 * MIB
        response = 64 * MIB if self.task in ("embeddings", "token-classification", "custom") else 16 * MIB
        return (
            self.server.max_request_size or request,
            self.server.max_response_size or response,
        )
