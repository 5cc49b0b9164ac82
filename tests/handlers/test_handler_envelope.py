"""The shared base: KServe v1 envelope, raw calls, one forward pass per batch, per-request errors, entry point."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from handler_harness import HANDLERS, Call, StandInContext, assemble, raw, v1, v1_body, worker_batch

# A custom handler with no model: numbers in, numbers times `scale` out; it records every forward pass.
SCALER = """
from mar_build_handlers.base import BadInstance, BaseHandler


class Scaler(BaseHandler):
    def load(self, model_path):
        self.scale = self.options.get("scale", 2)
        self.passes = []

    def preprocess_instance(self, instance):
        if isinstance(instance, (bytes, bytearray)):
            instance = instance.decode()
        if isinstance(instance, dict):
            instance = instance["data"]  # KeyError for any other object: a bug in this hook, answered 500
        if isinstance(instance, str):
            try:
                instance = float(instance)
            except ValueError:
                raise BadInstance("expected a number, not " + instance) from None
        if isinstance(instance, bool) or not isinstance(instance, (int, float)):
            raise BadInstance("expected a number, not " + str(instance))
        return instance

    def pass_key(self, item):
        return item >= 100  # big numbers go through a forward pass of their own

    def inference(self, items):
        self.passes.append(list(items))
        if any(x % 100 == 13 for x in items):
            raise RuntimeError("unlucky 13")
        return [x * self.scale for x in items]

    def explain(self, items):
        return [{"input": x} for x in items]
"""


NO_BODY = "the request has no body; send it as application/json, text/plain or application/octet-stream"


@pytest.fixture
def scaler(archive):
    def make(**keywords):
        return archive("custom", custom_handler=SCALER, **keywords)

    return make


def test_a_mixed_batch_is_one_forward_pass_and_every_bad_request_gets_its_own_400(scaler):
    served = scaler()
    answers = served.batch(
        v1([1, 2]),
        v1_body(b'{"instances": [1, '),
        v1_body(b'{"instances": "1"}'),
        v1([]),
        v1([1, "a"]),
        raw("5", "text/plain"),
        raw(7),
        raw({"data": 3}),
        v1([{"data": 4}]),
    )
    assert [a.status for a in answers] == [200, 400, 400, 400, 400, 200, 200, 200, 200]
    assert answers[0].body == {"predictions": [2, 4]}
    assert "not valid JSON" in answers[1].body["error"]
    assert answers[2].body == {"error": '"instances" must be a list, got str'}
    assert answers[3].body == {"error": '"instances" is empty'}
    assert answers[4].body == {"error": "instance 1: expected a number, not a"}
    assert answers[4].phrase == answers[4].body["error"]
    assert [a.body for a in answers[5:]] == [10.0, 14, 6, {"predictions": [8]}]
    assert served.service.passes == [[1, 2, 5.0, 7, 3, 4]]


def test_explain_header_answers_explanations_in_their_own_pass(scaler):
    served = scaler()
    answers = served.batch(v1([1, 2], explain=True), v1([3]), raw(4))
    assert [a.status for a in answers] == [200, 200, 200]
    assert answers[0].body == {"explanations": [{"input": 1}, {"input": 2}]}
    assert answers[1].body == {"predictions": [6]}
    assert answers[2].body == 8
    assert served.service.passes == [[3, 4]]  # explain() of this handler runs no inference


def test_a_failing_forward_pass_fails_its_requests_with_500_and_the_message(scaler):
    served = scaler()
    answers = served.batch(v1([1]), v1([13]), v1_body(b"nope"), v1([2], explain=True))
    assert [a.status for a in answers] == [500, 500, 400, 200]
    assert answers[0].body == answers[1].body == {"error": "RuntimeError: unlucky 13"}
    assert answers[3].body == {"explanations": [{"input": 2}]}


def test_pass_keys_split_the_forward_passes_and_a_failing_pass_fails_only_its_requests(scaler):
    served = scaler()
    answers = served.batch(v1([1, 2]), v1([113]), v1([200]), v1([3, 213]), raw(4))
    assert [a.status for a in answers] == [200, 500, 500, 500, 200]
    assert [answers[0].body, answers[4].body] == [{"predictions": [2, 4]}, 8]
    assert answers[3].body == {"error": "RuntimeError: unlucky 13"}
    assert served.service.passes == [[1, 2, 3, 4], [113, 200, 213]]


def test_a_failing_preprocessing_hook_fails_only_its_request_with_500(scaler):
    served = scaler()
    answers = served.batch(raw({"x": 1}), v1([1]))
    assert (answers[0].status, answers[0].body) == (500, {"error": "KeyError: 'data'"})
    assert (answers[1].status, answers[1].body) == (200, {"predictions": [2]})


def test_max_internal_batch_chunks_the_forward_pass_and_keeps_the_order(scaler):
    served = scaler(options={"max_internal_batch": 2, "scale": 3})
    answers = served.batch(v1([1, 2, 3]), v1([4, 5]))
    assert [a.body for a in answers] == [{"predictions": [3, 6, 9]}, {"predictions": [12, 15]}]
    assert served.service.passes == [[1, 2], [3, 4], [5]]


def test_the_status_phrase_is_one_ascii_line_and_the_body_keeps_the_message(scaler):
    answer = scaler().one(v1(["é\nzwei"]))
    assert answer.status == 400
    assert answer.body == {"error": "instance 0: expected a number, not é\nzwei"}
    assert answer.phrase == "instance 0: expected a number, not ? zwei"


def test_the_body_is_found_beside_query_parameters_and_under_a_form_field_name(scaler):
    served = scaler()
    answers = served.batch(
        Call(b'{"instances": [1]}', query={"threshold": "0.5"}),
        Call(b"21", "text/plain", name="data"),
        Call(b"3", "text/plain", name="file"),
        Call(b"3", "text/plain", name="file", query={"x": "1"}),
    )
    assert [a.body for a in answers[:3]] == [{"predictions": [2]}, 42.0, 6.0]
    assert (answers[3].status, answers[3].body) == (400, {"error": NO_BODY})


def test_json_bytes_without_a_json_content_type_are_a_raw_instance(scaler):
    answer = scaler().one(raw(b"2.5", "application/octet-stream"))
    assert (answer.status, answer.body) == (200, 5.0)


def test_threads_come_from_options_then_environment_then_cpus_per_worker(scaler, monkeypatch):
    scaler(options={"threads": 1})
    assert torch.get_num_threads() == 1
    monkeypatch.setenv("MAR_BUILD_THREADS", "2")
    scaler()
    assert torch.get_num_threads() == 2
    monkeypatch.delenv("MAR_BUILD_THREADS")
    scaler(max_workers=64)
    assert torch.get_num_threads() == 1
    served = scaler(max_workers=1)
    assert torch.get_num_threads() == served.service.initialize.__globals__["available_cpus"]()


def test_available_cpus_is_capped_by_the_cgroup_quota(archive, tmp_path: Path):
    available_cpus = archive("custom", custom_handler=SCALER).service.initialize.__globals__["available_cpus"]
    affinity = len(os.sched_getaffinity(0))
    v2 = tmp_path / "v2"
    v2.mkdir()
    (v2 / "cpu.max").write_text("50000 100000\n")  # limits.cpu 0.5
    assert available_cpus(v2) == 1
    (v2 / "cpu.max").write_text("max 100000\n")
    assert available_cpus(v2) == affinity
    v1 = tmp_path / "v1"
    (v1 / "cpu").mkdir(parents=True)
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("150000\n")
    (v1 / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert available_cpus(v1) == min(affinity, 2)
    assert available_cpus(tmp_path / "none") == affinity


def test_entry_names_a_missing_task_module_or_an_ambiguous_custom_handler(archive):
    with pytest.raises(ValueError, match="unknown task 'translation'"):
        archive("translation")
    two = SCALER + "\n\nclass Other(Scaler):\n    pass\n"
    with pytest.raises(ValueError, match=r"exactly one BaseHandler subclass \(found: Other, Scaler\)"):
        archive("custom", custom_handler=two)
    with pytest.raises(ValueError, match=r"found: none"):
        archive("custom", custom_handler="X = 1\n")


def test_entry_imports_only_the_standard_library_at_module_level(tmp_path: Path):
    model_dir = assemble(tmp_path / "a", "tensor")
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); import mar_build_entry; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'torch', 'transformers', 'PIL', 'ts', 'numpy', 'mar_build_handlers'}))"
    )
    result = subprocess.run([sys.executable, "-c", code, str(model_dir)], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def _py38_problems(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), feature_version=(3, 8))
    problems = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            if node.func.id == "isinstance" and any(isinstance(a, ast.BinOp) for a in node.args[1:]):
                problems.append(f"{path.name}:{node.lineno} isinstance with X | Y")
            if node.func.id == "zip" and any(k.arg == "strict" for k in node.keywords):
                problems.append(f"{path.name}:{node.lineno} zip(strict=)")
        if isinstance(node, ast.Attribute) and node.attr in ("removeprefix", "removesuffix"):
            problems.append(f"{path.name}:{node.lineno} str.{node.attr}")
    if "from __future__ import annotations" not in path.read_text(encoding="utf-8"):
        problems.append(f"{path.name}: no 'from __future__ import annotations' (PEP 604/585 hints)")
    return problems


def test_handlers_run_on_the_python_of_older_torchserve_images():
    """Workers run the image's Python (3.8/3.9 in TorchServe 0.9.0 images), not the toolkit's."""
    problems = [p for path in sorted(HANDLERS.glob("*.py")) if path.stat().st_size for p in _py38_problems(path)]
    assert problems == []


def test_answers_are_compact_json_text(scaler):
    """TorchServe sends a str answer as it is: every answer is already compact JSON (even a bare label)."""
    served = scaler()
    rows, headers = worker_batch([v1([1.5])])
    context = StandInContext(served.model_dir, 8)
    context.headers = headers
    assert served._handle(rows, context) == [json.dumps({"predictions": [3.0]}, separators=(",", ":"))]
