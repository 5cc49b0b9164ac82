"""One error hierarchy for the whole toolkit.

Every failure a user can cause or fix is a ``ToolkitError``; the CLI turns it into a message and an exit status in
exactly one place (``toolkit._cli``). Anything else escaping the library is a bug and keeps its traceback.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


class ToolkitError(Exception):
    """Base of every error the toolkit raises on purpose.

    ``hint`` is the fix, said so a person can act on it; it is printed after the message.
    """

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n  hint: {self.hint}"


class SpecError(ToolkitError):
    """mar.yaml or a CLI override is wrong: unknown key, bad value, missing model path."""

    def __init__(self, message: str, *, path: Path | None = None, key: str | None = None, hint: str | None = None):
        where = f"{path}: " if path else ""
        where += f"{key}: " if key else ""
        super().__init__(where + message, hint=hint)
        self.path = path
        self.key = key


class TemplateError(ToolkitError):
    """A template could not be rendered (an undefined variable, a syntax error): a bug, named by template."""

    def __init__(self, message: str, *, template: str) -> None:
        super().__init__(f"template {template}: {message}")
        self.template = template


class ArchiveError(ToolkitError):
    """Building or reading a .mar failed."""

    def __init__(self, message: str, *, path: Path | None = None, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.path = path


class LayoutError(ToolkitError):
    """A layout (config/config.properties + model-store/*.mar) is missing, unreadable or inconsistent."""

    def __init__(
        self, message: str, *, path: Path | None = None, problems: Sequence[str] = (), hint: str | None = None
    ) -> None:
        super().__init__(message, hint=hint)
        self.path = path
        self.problems = list(problems)


class ServeError(ToolkitError):
    """The local predictor (TorchServe + wrapper) could not start or stopped; carries the log lines that explain it."""

    def __init__(self, message: str, *, log_tail: Sequence[str] = (), hint: str | None = None) -> None:
        if log_tail:
            message = message + "\n  last log lines:\n" + "\n".join("    " + line for line in log_tail)
        super().__init__(message, hint=hint)
        self.log_tail = list(log_tail)


class StagingError(ToolkitError):
    """Copying a layout to a PVC folder or an S3 prefix failed."""

    def __init__(self, message: str, *, uri: str | None = None, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.uri = uri


class RenderError(ToolkitError):
    """Manifests could not be rendered from the given values (an invalid name, a bad resource quantity)."""


class DeployError(ToolkitError):
    """Applying, watching or deleting an InferenceService failed; ``diagnosis`` holds what the cluster said."""

    def __init__(self, message: str, *, diagnosis: Sequence[str] = (), hint: str | None = None) -> None:
        if diagnosis:
            message = message + "\n" + "\n".join("  " + line for line in diagnosis)
        super().__init__(message, hint=hint)
        self.diagnosis = list(diagnosis)


class PredictError(ToolkitError):
    """A call to a KServe v1 endpoint failed. ``status``/``url``/``body`` are what the server answered (if it did)."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        url: str | None = None,
        body: str | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.status = status
        self.url = url
        self.body = body
