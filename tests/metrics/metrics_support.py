"""Helpers for the metrics tests: what a `mar-build serve` process serves, and a scrape of /metrics as series.

``ServeProcess`` (tests/serve/serve_support.py) runs ``python -m toolkit serve ARGS`` and collects its stdout.
``scrape(url)`` reads the Prometheus text as Prometheus stores it, name by name:
``{(series name, ((label, value), ...)): value}``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import httpx

Series = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@dataclass(frozen=True)
class Served:
    runtime: str
    url: str
    metrics_url: str
    metrics_port: int
    printed: str
    model: str = "intent"

    @property
    def predict_url(self) -> str:
        return f"{self.url}/v1/models/{self.model}:predict"


_SAMPLE = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\d+)?")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)",?')


def scrape(url: str) -> Series:
    """Every sample at ``url`` (a /metrics endpoint), under the name it has on the wire, as Prometheus stores it
    (prometheus_client's own parser would rename TorchServe's ``Requests2XX`` to ``Requests2XX_total``)."""
    text = httpx.get(url, timeout=30).text
    series: Series = {}
    for line in text.splitlines():
        match = _SAMPLE.fullmatch(line.strip())
        if line.startswith("#") or match is None:
            continue
        name, labels, value = match.groups()
        pairs = tuple(sorted(_LABEL.findall(labels or "")))
        series[(name, pairs)] = float(value)
    return series


def label_sets(series: Series, name: str) -> set[frozenset[str]]:
    """The label names of every sample named ``name`` (``le`` left out)."""
    return {frozenset(k for k, _ in labels if k != "le") for n, labels in series if n == name}


def total(series: Series, name: str, **labels: str) -> float:
    """The sum of the samples named ``name`` whose labels include ``labels``."""
    return sum(v for (n, ls), v in series.items() if n == name and labels.items() <= dict(ls).items())
