"""The one home of config.properties text: reading it as TorchServe does, and changing keys in place.

TorchServe's frontend reads the file with java.util.Properties: '#'/'!' comments, '=', ':' or whitespace between
key and value, backslash continuations, later keys winning. KServe's wrapper reads it line by line instead (so
model_snapshot must be one line: `check` says so). No library in our dependency set parses .properties and the
format is small, so it is written here, once: every reader and writer of the file goes through these functions.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Entry:
    """One logical entry: its key, value, and the physical lines it spans (with their line endings)."""

    key: str
    value: str
    lines: tuple[str, ...]

    @property
    def continued(self) -> bool:
        """True when the entry runs over several physical lines (a backslash continuation)."""
        return len(self.lines) > 1


def iter_lines(text: str) -> Iterator[Entry | str]:
    """The text as it reads: an Entry for each key (with all its lines), the other lines (comments, blanks) as is."""
    pending: list[str] = []
    logical: list[str] = []
    for raw, content in zip(text.splitlines(keepends=True), text.splitlines(), strict=True):
        line = content.lstrip()
        if not pending and (not line or line[0] in "#!"):
            yield raw
            continue
        pending.append(raw)
        trailing = len(line) - len(line.rstrip("\\"))
        if trailing % 2 == 1:  # an odd number of trailing backslashes continues the line
            logical.append(line[:-1])
            continue
        logical.append(line)
        key, value = _split_entry("".join(logical))
        yield Entry(key, value, tuple(pending))
        pending, logical = [], []
    if pending:
        key, value = _split_entry("".join(logical))
        yield Entry(key, value, tuple(pending))


def parse_properties(text: str) -> dict[str, str]:
    """Parse Java .properties text the way TorchServe's frontend (java.util.Properties) reads it; later keys win."""
    return {item.key: item.value for item in iter_lines(text) if isinstance(item, Entry)}


def find_entry(text: str, key: str) -> Entry | None:
    """The entry that sets ``key`` (the last one, as Java's last-wins reads it), or None."""
    found = None
    for item in iter_lines(text):
        if isinstance(item, Entry) and item.key == key:
            found = item
    return found


def set_properties(text: str, values: Mapping[str, str], *, comment: str | None = None) -> str:
    """``text`` with each key of ``values`` set: its first entry rewritten in place (continuation lines too),
    later entries of the same key dropped (Java's last-wins would undo ours), missing keys appended after
    ``comment`` (a line starting '# ', when given). Every other line is kept byte for byte."""
    pending = dict(values)
    out: list[str] = []
    for item in iter_lines(text):
        if isinstance(item, str):
            out.append(item)
        elif item.key in pending:
            ending = "\n" if item.lines[-1].endswith("\n") else ""
            out.append(f"{item.key}={pending.pop(item.key)}{ending}")
        elif item.key not in values:
            out.extend(item.lines)
    if pending:
        if out and not out[-1].endswith("\n"):
            out[-1] += "\n"
        if comment:
            out.append(f"# {comment}\n")
        out.extend(f"{key}={value}\n" for key, value in pending.items())
    return "".join(out)


def _split_entry(entry: str) -> tuple[str, str]:
    i = 0
    while i < len(entry):
        ch = entry[i]
        if ch == "\\":
            i += 2
            continue
        if ch in "=: \t":
            break
        i += 1
    key = entry[:i].replace("\\", "")
    rest = entry[i:].lstrip(" \t")
    if rest[:1] in ("=", ":"):
        rest = rest[1:].lstrip(" \t")
    return key, rest.rstrip()


def truthy(value: str | None) -> bool:
    """A Java properties boolean as TorchServe reads it (Boolean.parseBoolean: "true" in any case, else false)."""
    return value is not None and value.strip().lower() == "true"
