"""The context a handler gets: what TorchServe's ``ts.context.Context`` offers, without TorchServe.

The API follows pytorch/serve ``ts/context.py`` (0.9.0 and 0.12.0 alike): ``manifest``, ``system_properties``
(model_dir, gpu_id, batch_size, server_name, server_version, limit_max_image_pixels), ``model_name``,
``model_yaml_config``, per-request ``get_request_header``/``get_all_request_header``/``get_request_id``, and
per-request answers ``set_response_status(code, phrase, idx)``, ``set_response_content_type``, response headers.
``metrics`` takes the calls handlers make on TorchServe's metrics cache (``get_metric``, ``add_metric_to_cache``,
``add_counter``, ``add_time``...) into the runtime's Prometheus registry, under the names and labels TorchServe's
frontend exports for a declared metric (toolkit/_metrics), so both runtimes' /metrics read the same.
"""

from __future__ import annotations

import os
from typing import Any

from .._metrics import handler_metrics

SERVER_NAME = "MMS"  # what TorchServe's own context reports; handlers written for it may compare
SERVER_VERSION = "mar-build-python"


class RequestProcessor:
    """One request of a batch: its headers in, its status and headers out (ts.context.RequestProcessor)."""

    def __init__(self, request_header: dict[str, Any]) -> None:
        self._status_code = 200
        self._reason_phrase: str | None = None
        self._response_header: dict[str, str] = {}
        self._request_header = request_header

    def get_request_property(self, key: str) -> Any:
        return self._request_header.get(key)

    def report_status(self, code: int, reason_phrase: str | None = None) -> None:
        self._status_code = code
        self._reason_phrase = reason_phrase

    def get_response_status_code(self) -> int:
        return self._status_code

    def get_response_status_phrase(self) -> str | None:
        return self._reason_phrase

    def add_response_property(self, key: str, value: str) -> None:
        self._response_header[key] = value

    def get_response_headers(self) -> dict[str, str]:
        return self._response_header

    def get_response_header(self, key: str) -> str | None:
        return self._response_header.get(key)

    def get_request_properties(self) -> dict[str, Any]:
        return self._request_header


class Context:
    """A handler's context: fixed at load (manifest, properties), per batch the requests' headers and answers."""

    def __init__(
        self, *, model_name: str, model_dir: str, manifest: dict[str, Any], batch_size: int, gpu: int | None,
        limit_max_image_pixels: bool = True, model_yaml_config: dict[str, Any] | None = None,
    ) -> None:
        self.model_name = model_name
        self.manifest = manifest
        self._system_properties: dict[str, Any] = {
            "model_dir": model_dir, "gpu_id": gpu, "batch_size": batch_size, "server_name": SERVER_NAME,
            "server_version": SERVER_VERSION, "limit_max_image_pixels": limit_max_image_pixels,
        }
        self.request_ids: dict[int, str] | None = None
        self.request_processor: list[RequestProcessor] = []
        self.metrics = handler_metrics(model_name)
        self.model_yaml_config = model_yaml_config or {}
        self.stopping_criteria = None
        self.header_key_sequence_id = os.getenv("TS_REQUEST_SEQUENCE_ID", "ts_request_sequence_id")

    @property
    def system_properties(self) -> dict[str, Any]:
        return self._system_properties

    def begin_batch(self, headers: list[dict[str, Any]], request_ids: list[str]) -> None:
        """Set up one batch: a fresh RequestProcessor per request (status 200, no response headers)."""
        self.request_processor = [RequestProcessor(h) for h in headers]
        self.request_ids = dict(enumerate(request_ids))
        self.metrics.request_ids = self.request_ids

    def get_request_id(self, idx: int = 0) -> str | None:
        return None if self.request_ids is None else self.request_ids.get(idx)

    def get_request_header(self, idx: int, key: str) -> Any:
        return self.request_processor[idx].get_request_property(key)

    def get_all_request_header(self, idx: int) -> dict[str, Any]:
        return self.request_processor[idx].get_request_properties()

    def set_response_content_type(self, idx: int, value: str) -> None:
        self.set_response_header(idx, "content-type", value)

    def get_response_content_type(self, idx: int) -> str | None:
        return self.get_response_headers(idx).get("content-type")

    def get_response_status(self, idx: int) -> tuple[int, str | None]:
        processor = self.request_processor[idx]
        return processor.get_response_status_code(), processor.get_response_status_phrase()

    def set_response_status(self, code: int = 200, phrase: str = "", idx: int = 0) -> None:
        if 0 <= idx < len(self.request_processor):
            self.request_processor[idx].report_status(code, reason_phrase=phrase)

    def set_all_response_status(self, code: int = 200, phrase: str = "") -> None:
        for processor in self.request_processor:
            processor.report_status(code, reason_phrase=phrase)

    def get_response_headers(self, idx: int) -> dict[str, str]:
        return self.request_processor[idx].get_response_headers()

    def set_response_header(self, idx: int, key: str, value: str) -> None:
        self.request_processor[idx].add_response_property(key, value)

    def get_sequence_id(self, idx: int) -> Any:
        return self.request_processor[idx].get_request_property(self.header_key_sequence_id)
