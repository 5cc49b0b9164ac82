"""The one home of the naming rules: model names, versions, Kubernetes names, labels, quantities, buckets, tags.

Each rule is a ``*_problem(value) -> str | None`` function: None when the value is valid, otherwise why it is not,
said so that each caller can put it in its own error (SpecError, RenderError, StagingError, PredictError) with its
own context. Every pattern is applied with ``fullmatch``: ``re.match`` with ``^...$`` also accepts a trailing newline,
which then ends up in a URL (``/v1/models/bert%0A:predict``) or a path.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

# torch-model-archiver's own rule (ModelExportUtils.check_model_name_regex_or_exit); the name is also the URL
# segment in /v1/models/NAME:predict, so nothing else may be admitted.
_MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_\-.]*")
_VERSION = _MODEL_NAME
# Kubernetes' validation (k8s.io/apimachinery/pkg/util/validation): DNS-1035 and DNS-1123 labels, subdomains.
_DNS1035_LABEL = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
_DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS1123_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_QUALIFIED_NAME_PART = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?")
# An OCI/Docker image tag (distribution/reference: [\w][\w.-]{0,127}).
_IMAGE_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
# S3 bucket names (AWS "Bucket naming rules"; MinIO applies the same): 3-63 lowercase letters, digits, '.', '-'.
_S3_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
# Google Cloud Storage also allows '_' (and up to 222 characters when the name has dots).
_GCS_BUCKET = re.compile(r"[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]")
# Kubernetes quantity (resource.ParseQuantity): a decimal number and one suffix: binary (Ki..Ei), decimal SI
# (n, u, m, k, M, G, T, P, E) or an integer exponent (e3, E-2).
_QUANTITY = re.compile(
    r"(?P<number>\+?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))"
    r"(?P<suffix>[eE][+-]?[0-9]+|Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE])?"
)
# An environment variable name every Kubernetes version takes (apimachinery IsEnvVarName, without the relaxed rule).
_ENV_NAME = re.compile(r"[-._a-zA-Z][-._a-zA-Z0-9]*")
_BINARY = {"Ki": 1, "Mi": 2, "Gi": 3, "Ti": 4, "Pi": 5, "Ei": 6}
_DECIMAL = {"n": -9, "u": -6, "m": -3, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}

DNS1035_RULE = (
    "a DNS-1035 label (lowercase letters, digits and '-', starting with a letter, ending with a letter or digit, "
    "at most 63 characters)"
)
DNS1123_SUBDOMAIN_RULE = "a DNS-1123 subdomain (lowercase letters, digits, '-' and '.', at most 253 characters)"
# The archive is NAME.mar, written through a temp file beside it (.NAME.mar.XXXXXXXX.tmp): both must fit in a file
# name (255 bytes on Linux filesystems), with room to spare for the temp names of other tools (TorchServe, kserve).
MODEL_NAME_MAX = 200


def _full(pattern: re.Pattern[str], value: Any) -> bool:
    return isinstance(value, str) and pattern.fullmatch(value) is not None


def model_name_problem(name: Any) -> str | None:
    """Why ``name`` is not a TorchServe model name (the name in /v1/models/NAME:predict), or None."""
    if not _full(_MODEL_NAME, name):
        return "TorchServe accepts letters, digits, '_', '-' and '.', starting with a letter or digit"
    if len(name) > MODEL_NAME_MAX:
        return f"it is {len(name)} characters long; at most {MODEL_NAME_MAX} fit in a file name with '.mar'"
    return None


def version_problem(version: Any) -> str | None:
    """Why ``version`` is not a model version TorchServe accepts, or None."""
    if not _full(_VERSION, version):
        return "versions are letters, digits, '.', '_' and '-', starting with a letter or digit"
    return None


def dns1035_label_problem(value: Any) -> str | None:
    """Why ``value`` is not a DNS-1035 label (an InferenceService or Service name), or None."""
    if not _full(_DNS1035_LABEL, value) or len(value) > 63:
        return f"it must be {DNS1035_RULE}"
    return None


def dns1123_label_problem(value: Any) -> str | None:
    """Why ``value`` is not a DNS-1123 label (a namespace name), or None."""
    if not _full(_DNS1123_LABEL, value) or len(value) > 63:
        return (
            "it must be a DNS-1123 label (lowercase letters, digits and '-', starting and ending with a letter or "
            "digit, at most 63 characters)"
        )
    return None


def dns1123_subdomain_problem(value: Any) -> str | None:
    """Why ``value`` is not a DNS-1123 subdomain (a PVC, Secret or ServiceAccount name), or None."""
    if not _full(_DNS1123_SUBDOMAIN, value) or len(value) > 253:
        return f"it must be {DNS1123_SUBDOMAIN_RULE}"
    return None


def label_key_problem(key: Any) -> str | None:
    """Why ``key`` is not a Kubernetes label/annotation key ([prefix/]name), or None when it is one."""
    if not isinstance(key, str):
        return f"keys must be strings, got {type(key).__name__}"
    prefix, slash, name = key.rpartition("/")
    if slash and not prefix:
        return "the prefix before '/' is empty"
    if slash and dns1123_subdomain_problem(prefix):
        return "the prefix before '/' must be a DNS-1123 subdomain (lowercase letters, digits, '-' and '.')"
    if not name:
        return "the name part is empty"
    if len(name) > 63:
        return "the name part is longer than 63 characters"
    if not _full(_QUALIFIED_NAME_PART, name):
        return "the name part must be letters, digits, '-', '_' and '.', starting and ending with a letter or digit"
    return None


def scalar_string(value: Any) -> str | None:
    """A YAML scalar as the string Kubernetes stores for a label or annotation value: text as is, numbers as
    written, booleans as ``true``/``false``; None for anything else (None, lists, mappings).

    mar.yaml and render() both go through this, so ``tier: 1`` means the same in a spec file and in a call.
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return str(value)
    return None


def label_value_problem(value: Any) -> str | None:
    """Why ``value`` is not a Kubernetes label value, or None when it is one."""
    if not isinstance(value, str):
        return f"values must be strings, got {type(value).__name__}"
    if len(value) > 63:
        return "label values are at most 63 characters"
    if value and not _full(_QUALIFIED_NAME_PART, value):
        return "label values are letters, digits, '-', '_' and '.', starting and ending with a letter or digit"
    return None


def env_name_problem(name: Any) -> str | None:
    """Why ``name`` is not an environment variable name every Kubernetes version takes, or None."""
    if not _full(_ENV_NAME, name):
        return "environment variable names are letters, digits, '_', '-' and '.', not starting with a digit"
    return None


def image_tag_problem(tag: Any) -> str | None:
    """Why ``tag`` is not an image tag, or None."""
    if not _full(_IMAGE_TAG, tag):
        return "an image tag is letters, digits, '_', '.' and '-', not starting with '.' or '-', at most 128"
    return None


def bucket_problem(name: Any, scheme: str = "s3") -> str | None:
    """Why ``name`` is not a bucket name for ``scheme`` (``s3`` or ``gs``), or None."""
    if scheme == "gs":
        if not _full(_GCS_BUCKET, name):
            return "Cloud Storage bucket names are 3-222 characters of lowercase letters, digits, '.', '_' and '-'"
        return None
    if not _full(_S3_BUCKET, name):
        return "S3 bucket names are 3-63 characters of lowercase letters, digits, '.' and '-'"
    return None


def parse_quantity(text: Any) -> Decimal:
    """The value of a Kubernetes resource quantity ("500m", "0.5Gi", "2", "1e3"); ValueError when it is not one."""
    match = _QUANTITY.fullmatch(text) if isinstance(text, str) else None
    if match is None and isinstance(text, str) and text.startswith("-") and _QUANTITY.fullmatch(text[1:]):
        raise ValueError(f"{text!r} is negative: resource quantities are 0 or more")
    if match is None:
        raise ValueError(f"{text!r} is not a Kubernetes quantity")
    number = Decimal(match.group("number"))
    suffix = match.group("suffix") or ""
    if suffix in _BINARY:
        return number * (Decimal(1024) ** _BINARY[suffix])
    if suffix in _DECIMAL:
        return number.scaleb(_DECIMAL[suffix])
    if suffix:
        return number.scaleb(int(suffix[1:]))
    return number


QUANTITY_HINT = "a number with an optional suffix: 500m or 0.5 (CPU), 512Mi, 2Gi or 1G (memory)"


def suggest_model_name(name: str) -> str:
    """The closest valid model name to ``name`` (for hints)."""
    cleaned = re.sub(r"[^A-Za-z0-9_\-.]+", "-", name).strip("-_.")
    return (cleaned or "model")[:MODEL_NAME_MAX]


def suggest_isvc_name(name: str) -> str:
    """The closest DNS-1035 label to ``name`` (for defaults and hints)."""
    cleaned = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")
    cleaned = re.sub(r"-{2,}", "-", cleaned)
    if not cleaned or not cleaned[0].isalpha():
        cleaned = "m-" + cleaned if cleaned else "model"
    return cleaned[:45].rstrip("-")
