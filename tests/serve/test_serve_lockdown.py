"""TorchServe (the dev venv's 0.12.0) behind the local predictor refuses to register a model from a URL: the
model API is off (enable_model_api=false) and allowed_urls admits no URL. The same on 0.9.0, where the model API
has no switch: tests/compat/test_lockdown_090.py."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
from serve_support import Stack


def test_a_registration_from_a_url_is_refused_and_never_fetched(stack: Stack) -> None:
    hits: list[str] = []

    class Recorder(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            hits.append(self.path)
            self.send_error(404)

        def log_message(self, *args: object) -> None:
            pass

    site = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    threading.Thread(target=site.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{site.server_address[1]}/evil.mar"
        answer = httpx.post(f"{stack.predictor.management_url}/models", params={"url": url}, timeout=60)
    finally:
        site.shutdown()
        site.server_close()
    # TorchServe 0.11.1+ with the model API off answers register (and unregister) with 405
    assert answer.status_code == 405 and answer.json()["type"] == "MethodNotAllowedException", answer.text
    assert hits == []
    # describe (what the wrappers poll for readiness) still answers with the model API off
    assert httpx.get(f"{stack.predictor.management_url}/models/linear", timeout=30).status_code == 200
