"""TorchServe's stock request envelopes (``kserve``, ``kservev2``), run so that they batch correctly.

Where the layout turns env config on (``enable_envvars_config=true``) and the environment sets
``TS_SERVICE_ENVELOPE`` (KServe sets ``kserve`` for v1, ``kservev2`` for v2), or config.properties sets
``service_envelope``, TorchServe wraps the handler in ts/torch_handler/request_envelope/<name>.py: the envelope
parses the batch, the handler sees the parsed inputs, the envelope formats the outputs. The stock envelope parses
only the first request of a batch (FACTS.md: every request of a batch > 1 then fails with 503). Here each request
goes through its own envelope instance, the inputs of all requests reach the handler as one list (what a stock
handler batches over), and its outputs are split back and formatted per request: a handler written for the stock
envelope answers what it answers under TorchServe, for every request of the batch.
"""

from __future__ import annotations

import importlib
from typing import Any

from .handling import Answer, Request, _failure, collect
from .loader import LoadedModel

PACKAGE = "ts.torch_handler.request_envelope"
_ATTRIBUTES = ("input_names", "input_request_id")  # what kservev2 keeps on the context between parse and format


def envelope_class(name: str) -> type:
    """The envelope class TorchServe would load for ``name`` (the first class of its module)."""
    import inspect

    module = importlib.import_module(f".{name}", PACKAGE)
    classes = [c for _, c in inspect.getmembers(module, inspect.isclass) if c.__module__ == module.__name__]
    if not classes:
        raise ValueError(f"{PACKAGE}.{name} defines no envelope")
    return classes[0]


def check_envelope(name: str) -> None:
    """Raise (ImportError, ValueError) when TorchServe has no envelope ``name``."""
    envelope_class(name)


def _focus(model: LoadedModel, requests: list[Request], idx: int) -> None:
    # The envelopes read request 0 (its explain header, its id): show them request ``idx`` alone.
    request = requests[idx]
    model.context.begin_batch([request.handler_headers()], [request.request_id])


def run_enveloped(model: LoadedModel, requests: list[Request]) -> list[Answer]:
    """Parse each request with its own envelope, run the handler once over all inputs, format each request."""
    cls = envelope_class(str(model.envelope))
    context = model.context
    envelopes: list[Any] = []
    inputs: list[Any] = []
    counts: list[int] = []
    saved: list[dict[str, Any]] = []
    answers: list[Answer | None] = [None] * len(requests)
    for idx, request in enumerate(requests):
        envelope = cls(model.entry)
        envelope.context = context
        _focus(model, requests, idx)
        try:
            parsed = list(envelope.parse_input([request.row()]) or [])
        except Exception as exc:
            answers[idx] = Answer.error(400, f"{type(exc).__name__}: {exc}")
            parsed = []
        saved.append({a: context.__dict__.pop(a) for a in _ATTRIBUTES if a in context.__dict__})
        envelopes.append(envelope)
        counts.append(len(parsed))
        inputs.extend(parsed)
    valid = [i for i, a in enumerate(answers) if a is None]
    if not valid:
        return [a for a in answers if a is not None]
    context.begin_batch([requests[i].handler_headers() for i in valid], [requests[i].request_id for i in valid])
    try:
        results = model.entry(inputs, context)
    except Exception as exc:
        failure = _failure(model, exc)
        return [a if a is not None else failure for a in answers]
    if not isinstance(results, list) or len(results) != len(inputs):
        # As TorchServe's check of the handler's answer count: every request of the batch fails alike.
        bad = collect(model, results, len(inputs)) if inputs else [Answer.error(503, "Invalid model predict output")]
        return [a if a is not None else bad[0] for a in answers]
    start = 0
    for idx in range(len(requests)):
        mine = results[start : start + counts[idx]]
        start += counts[idx]
        if answers[idx] is not None:
            continue
        _focus(model, requests, idx)
        context.__dict__.update(saved[idx])
        formatted = envelopes[idx].format_output(mine) if mine else mine
        answers[idx] = collect(model, formatted if isinstance(formatted, list) else [formatted], 1)[0]
    return [a for a in answers if a is not None]
