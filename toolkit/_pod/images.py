"""What each runtime image ships: the table `check` compares a layout with, and `mar-build image` builds on.

For engineer E (``mar-build image``) and anyone else reading it: ``image_facts(runtime, tag)`` returns one
``ImageFacts`` row; ``image_facts("python")`` is the python runtime's image, built FROM python:3.11-slim-bookworm
with the pins of constraints.txt (torch 2.13.0, transformers 5.23.0, kserve 0.21.0). Use ``row.python`` (``"3.11"``)
and ``row.torch`` for the base image's Python and torch when resolving requirements; ``row.packages`` maps every
known distribution (normalised names) to its version.

How the torchserve rows were read (pytorch/serve at each ``vX.Y.Z`` tag, the tag's commit date as "as of"):
- ``kubernetes/kserve/Dockerfile``: ``FROM pytorch/torchserve:latest(-cpu)`` at the tag's date, i.e. that release's
  base image, then ``pip install -r kubernetes/kserve/requirements.txt`` (kserve[storage], transformers, captum,
  grpcio, protobuf, grpcio-tools; only kserve is pinned, from 0.11.1 on ``==0.13.0``).
- The base image: ``docker/Dockerfile`` (``ARG PYTHON_VERSION=3.9``, Ubuntu 20.04 via docker/build_image.sh, a venv
  in /home/venv) installs ``requirements/torch_linux.txt`` (torch, torchvision, pillow, numpy pins) and the
  release's torchserve.
- The unpinned names were resolved here as pip resolves them in the image: Python 3.9, the pins above, and only
  releases uploaded by the tag's date (``pip install --dry-run --report --uploaded-prior-to DATE`` against PyPI,
  run 2026-12-02). Resolving later gives newer transformers: the row is the image as published at the tag.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .._errors import SpecError

TORCHSERVE_IMAGE = "pytorch/torchserve-kfs"
DEFAULT_TAG = "0.9.0"  # kserve-torchserve's tag in every KServe release up to 0.20 (FACTS.md, "The predictor pod")
PYTHON_BASE_IMAGE = "python:3.11-slim-bookworm"
PYTHON_RUNTIME_TAG = "mar-build"  # the python runtime's one row: the image `mar-build image --runtime python` builds


@dataclass(frozen=True)
class ImageFacts:
    """One runtime image: its Python (major.minor) and the versions of what it ships (None: not installed)."""

    runtime: str  # torchserve | python
    tag: str  # the pytorch/torchserve-kfs tag, or PYTHON_RUNTIME_TAG
    image: str  # the image reference (the python runtime's: its base image)
    released: str  # the date the row is resolved as of (ISO)
    python: str
    torch: str
    torchvision: str | None
    transformers: str | None
    tokenizers: str | None
    pillow: str | None
    kserve: str
    torchserve: str | None
    extra: dict[str, str] = field(default_factory=dict)  # further pins that decide what installs beside them
    source: str = ""
    glibc: tuple[int, int] = (2, 31)  # Ubuntu 20.04 under pytorch/torchserve; Debian bookworm's is 2.36

    def platforms(self, machine: str = "x86_64") -> list[str]:
        """pip's --platform values for wheels this image runs, newest first: every manylinux tag of its glibc and
        older (pip does not widen one --platform to older glibc versions)."""
        return wheel_platforms(self.glibc, machine)

    @property
    def packages(self) -> dict[str, str]:
        """Every distribution the row knows, by normalised name (``torch``, ``pillow``, ``numpy``, ...)."""
        known = {
            "torch": self.torch, "torchvision": self.torchvision, "transformers": self.transformers,
            "tokenizers": self.tokenizers, "pillow": self.pillow, "kserve": self.kserve,
            "torchserve": self.torchserve,
        }
        return {k: v for k, v in {**known, **self.extra}.items() if v is not None}

    @property
    def python_tuple(self) -> tuple[int, int]:
        major, minor = self.python.split(".")[:2]
        return int(major), int(minor)


def wheel_platforms(glibc: tuple[int, int], machine: str = "x86_64") -> list[str]:
    """The manylinux tags a C library ``glibc`` runs (manylinux_2_17 is manylinux2014), newest first."""
    major, minor = glibc
    return [*(f"manylinux_{major}_{m}_{machine}" for m in range(minor, 16, -1)), f"manylinux2014_{machine}",
            f"linux_{machine}"]


def _ts(tag: str, released: str, *, torch: str, torchvision: str, pillow: str, transformers: str,
        tokenizers: str, kserve: str, extra: dict[str, str], source: str) -> ImageFacts:
    return ImageFacts(
        "torchserve", tag, f"{TORCHSERVE_IMAGE}:{tag}", released, "3.9", torch, torchvision, transformers,
        tokenizers, pillow, kserve, tag, {"numpy": "1.24.3", **extra}, source,
    )


_SERVE = "pytorch/serve@v{0}: kubernetes/kserve/Dockerfile, kubernetes/kserve/requirements.txt, docker/Dockerfile, "
_SERVE += "requirements/torch_linux.txt; unpinned names resolved with --uploaded-prior-to {1}"

# Each row: pytorch/serve at the tag (commit date), see the module docstring for how it was read.
TORCHSERVE_ROWS: dict[str, ImageFacts] = {
    # v0.8.2, 04e0b37, 2023-08-28: torch 2.0.1+cpu, torchvision 0.15.2, pillow 9.3.0; kserve[storage]>=0.11.0
    "0.8.2": _ts("0.8.2", "2023-08-28", torch="2.0.1", torchvision="0.15.2", pillow="9.3.0",
                 transformers="4.32.1", tokenizers="0.13.3", kserve="0.11.0",
                 extra={"protobuf": "3.20.3", "pydantic": "1.10.12", "huggingface-hub": "0.16.4",
                        "safetensors": "0.3.3"},
                 source=_SERVE.format("0.8.2", "2023-08-28")),
    # v0.9.0, db47936, 2023-10-12: torch 2.1.0+cpu, torchvision 0.16.0, pillow 10.0.1; kserve[storage]>=0.11.0
    "0.9.0": _ts("0.9.0", "2023-10-12", torch="2.1.0", torchvision="0.16.0", pillow="10.0.1",
                 transformers="4.34.0", tokenizers="0.14.1", kserve="0.11.1",
                 extra={"protobuf": "3.20.3", "pydantic": "1.10.13", "huggingface-hub": "0.17.3",
                        "safetensors": "0.4.0"},
                 source=_SERVE.format("0.9.0", "2023-10-12")),
    # v0.10.0, 4a630cb, 2024-03-14: torch 2.2.1+cpu, torchvision 0.17.1, pillow 10.2.0; kserve[storage]>=0.11.0
    "0.10.0": _ts("0.10.0", "2024-03-14", torch="2.2.1", torchvision="0.17.1", pillow="10.2.0",
                  transformers="4.38.2", tokenizers="0.15.2", kserve="0.12.0",
                  extra={"protobuf": "3.20.3", "pydantic": "1.10.14", "huggingface-hub": "0.21.4",
                         "safetensors": "0.4.2"},
                  source=_SERVE.format("0.10.0", "2024-03-14")),
    # v0.11.0, 34bc370, 2024-05-16: torch 2.3.0+cpu, torchvision 0.18.0, pillow 10.3.0; kserve[storage]>=0.12.0,
    # ray[serve]>=2.9.2,<=2.9.3
    "0.11.0": _ts("0.11.0", "2024-05-16", torch="2.3.0", torchvision="0.18.0", pillow="10.3.0",
                  transformers="4.40.2", tokenizers="0.19.1", kserve="0.12.0",
                  extra={"protobuf": "3.20.3", "pydantic": "1.10.15", "huggingface-hub": "0.23.0",
                         "safetensors": "0.4.3"},
                  source=_SERVE.format("0.11.0", "2024-05-16")),
    # v0.11.1, 9a0ab89, 2024-07-16: torch 2.3.0+cpu, torchvision 0.18.0, pillow 10.3.0; kserve[storage]==0.13.0
    "0.11.1": _ts("0.11.1", "2024-07-16", torch="2.3.0", torchvision="0.18.0", pillow="10.3.0",
                  transformers="4.42.4", tokenizers="0.19.1", kserve="0.13.0",
                  extra={"protobuf": "3.20.3", "pydantic": "2.8.2", "huggingface-hub": "0.23.5",
                         "safetensors": "0.4.3"},
                  source=_SERVE.format("0.11.1", "2024-07-16")),
    # v0.12.0, 6bdb1ba, 2024-09-24: torch 2.4.0+cpu, torchvision 0.19.0, pillow 10.3.0; kserve[storage]==0.13.0
    "0.12.0": _ts("0.12.0", "2024-09-24", torch="2.4.0", torchvision="0.19.0", pillow="10.3.0",
                  transformers="4.44.2", tokenizers="0.19.1", kserve="0.13.0",
                  extra={"protobuf": "3.20.3", "pydantic": "2.9.2", "huggingface-hub": "0.25.1",
                         "safetensors": "0.4.5"},
                  source=_SERVE.format("0.12.0", "2024-09-24")),
}

PYTHON_ROW = ImageFacts(
    # FROM python:3.11-slim-bookworm; the versions are constraints.txt's (the project's own pins), which
    # `mar-build image --runtime python` installs: the image is what this project builds, not a published one.
    "python", PYTHON_RUNTIME_TAG, PYTHON_BASE_IMAGE, "2026-12-01", "3.11", "2.13.0", None, "5.23.0", "0.23.3",
    "13.0.0", "0.21.0", None,
    {"numpy": "2.4.6", "protobuf": "6.33.6", "pydantic": "2.14.3", "huggingface-hub": "2.4.0",
     "safetensors": "0.8.0"},
    "constraints.txt of this project; base image python:3.11-slim-bookworm",
    (2, 36),
)

TAGS: tuple[str, ...] = tuple(TORCHSERVE_ROWS)


def image_facts(runtime: str = "torchserve", tag: str | None = None) -> ImageFacts:
    """The row for ``runtime``'s image at ``tag`` (torchserve: a pytorch/torchserve-kfs tag, ``-gpu`` accepted, the
    same packages with CUDA builds; None: DEFAULT_TAG). The python runtime has one row, whatever ``tag`` is.
    Raises SpecError for an unknown runtime or tag."""
    if runtime == "python":
        return PYTHON_ROW
    if runtime != "torchserve":
        raise SpecError(f"runtime must be torchserve or python, not {runtime!r}", key="runtime")
    wanted = DEFAULT_TAG if tag is None else tag.removesuffix("-gpu")
    try:
        return TORCHSERVE_ROWS[wanted]
    except KeyError:
        raise SpecError(
            f"runtime_version {tag!r}: mar-build knows what the pytorch/torchserve-kfs images {', '.join(TAGS)} "
            "ship, not this one", key="runtime_version",
            hint=f"use one of {', '.join(TAGS)} (or build your own: mar-build image)",
        ) from None
