"""The callback types every step shares: byte progress and typed events (the CLI renders both; STYLE 11)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

E = TypeVar("E")

Progress = Callable[[int, int], None]
"""progress(done, total): bytes written or transferred so far, of ``total``; called from the caller's thread."""

OnEvent = Callable[[E], None]
"""on_event(event): one typed event (ServeEvent, DeployEvent) as it happens; ``OnEvent[ServeEvent]``."""
