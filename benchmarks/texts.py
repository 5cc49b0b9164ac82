"""The two text sets of DESIGN.md's serving targets, built from the text sample's data.csv (no download).

- short: the 480 customer messages of data.csv as they are (4 to 17 words, about 12 tokens);
- long: three messages of the same intent joined into one ticket (about 30 words, 40 to 64 tokens; the sample
  truncates at max_length 64), so every long text still has one right intent.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "samples" / "text-classification"
SETS = ("short", "long")


def _messages() -> list[tuple[str, str]]:
    with (SAMPLE / "data.csv").open(encoding="utf-8", newline="") as f:
        return [(row["text"], row["label"]) for row in csv.DictReader(f)]


def texts(name: str) -> list[str]:
    """The texts of set ``name`` ("short" or "long"), in a fixed order."""
    messages = _messages()
    if name == "short":
        return [text for text, _ in messages]
    if name == "long":
        by_label: dict[str, list[str]] = {}
        for text, label in messages:
            by_label.setdefault(label, []).append(text)
        out = []
        for group in by_label.values():
            out += [" ".join(group[(i + k) % len(group)] for k in range(3)) for i in range(len(group))]
        # interleave intents so any window of the rotation mixes them
        labels = list(by_label)
        size = len(out) // len(labels)
        return [out[j * size + i] for i in range(size) for j in range(len(labels))]
    raise ValueError(f"unknown text set {name!r}; expected one of {SETS}")


def v1_body(text: str) -> bytes:
    """One single-instance KServe v1 request, as the DESIGN.md hand workflow sends it."""
    return json.dumps({"instances": [{"data": text}]}, separators=(",", ":")).encode()


# One in ten requests of the mixed load is one of these: each must get its own 4xx, and nothing else may fail.
MALFORMED: list[bytes] = [
    b'{"instances": [{"data": "unterminated',  # not JSON
    b'{"instances": {"data": "not a list"}}',  # instances not a list
    b'{"instances": []}',  # empty
    b'{"instances": [42]}',  # an instance of the wrong type
    b'{"instances": [{"data": "ok"}, {"image": "wrong key"}]}',  # one bad instance spoils its request
    b'{"inputs": [{"data": "v2-style key"}]}',  # no instances: a raw call whose body is not a text
]
