"""CLI commands: deploy (registered on the group in __init__)."""

from __future__ import annotations
