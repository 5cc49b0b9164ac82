"""The report of `check`: its problems (errors and warnings, each with its fix), shared by the preflight's rules."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .._errors import LayoutError

Level = Literal["error", "warning"]


@dataclass(frozen=True)
class Problem:
    """One finding of `check`: its level, what is wrong, and the fix (``hint``)."""

    level: Level
    message: str
    hint: str = ""

    def __str__(self) -> str:
        return f"{self.level}: {self.message}" + (f"\n  fix: {self.hint}" if self.hint else "")

    def to_dict(self) -> dict[str, str]:
        """``{"level", "message", "fix"}``: the hint is called fix, as the CLI prints it."""
        return {"level": self.level, "message": self.message, "fix": self.hint}


@dataclass
class CheckReport:
    """Every problem found in a layout; ``ok`` when none is an error."""

    path: Path
    models: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.level == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.level == "warning"]

    @property
    def ok(self) -> bool:
        return not self.errors

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict: path, ok, models, counts and every problem (what ``mar-build check --json`` prints)."""
        return {
            "path": str(self.path), "ok": self.ok, "models": list(self.models),
            "errors": len(self.errors), "warnings": len(self.warnings),
            "problems": [p.to_dict() for p in self.problems],
        }

    def raise_for_errors(self) -> None:
        """Raise LayoutError listing every error (for stage/serve, which refuse a broken layout)."""
        if self.errors:
            raise LayoutError(
                f"{self.path} fails the preflight check with {len(self.errors)} error(s):\n"
                + "\n".join("  - " + str(p).replace("\n", "\n    ") for p in self.errors),
                path=self.path, problems=[str(p) for p in self.errors],
                hint=f"run `mar-build check {self.path}` for the full report",
            )

    def _error(self, message: str, hint: str = "") -> None:
        self.problems.append(Problem("error", message, hint))

    def _warn(self, message: str, hint: str = "") -> None:
        self.problems.append(Problem("warning", message, hint))


def to_int(value: object, default: int) -> int:
    try:
        return int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return default
