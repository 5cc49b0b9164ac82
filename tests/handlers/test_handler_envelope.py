"""The shared base: KServe v1 envelope, raw calls, one forward pass per batch, per-request errors, entry point."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest
from handler_support import (
    HANDLERS,
    Call,
    StandInContext,
    assemble,
    handler_module,
    load,
    raw,
    v1,
    v1_body,
    worker_batch,
)

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


# A custom handler whose hooks refuse some requests with statuses of their own.
PICKY = """
from mar_build_handlers.base import BaseHandler, InvalidRequest


class Picky(BaseHandler):
    def load(self, model_path):
        pass

    def preprocess_instance(self, instance):
        if instance == "huge":
            raise InvalidRequest("too large", status=413)
        return instance

    def check_request(self, items):
        if "teapot" in items:
            raise InvalidRequest("short and stout", 418)

    def pass_key(self, item):
        return item == "busy"

    def inference(self, items):
        if "busy" in items:
            raise InvalidRequest("try again later", status=503)
        return items
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


def test_an_invalid_request_is_answered_with_the_status_it_was_raised_with(archive):
    served = archive("custom", custom_handler=PICKY)
    answers = served.batch(v1(["ok", "huge"]), raw("huge", "text/plain"), v1(["teapot"]), v1(["busy"]), v1(["fine"]))
    assert [(a.status, a.body) for a in answers] == [
        (413, {"error": "instance 1: too large"}),  # the instance's number is added, its status kept
        (413, {"error": "too large"}),
        (418, {"error": "short and stout"}),
        (503, {"error": "try again later"}),
        (200, {"predictions": ["fine"]}),
    ]


def test_invalid_request_takes_its_status_in_the_constructor():
    base = handler_module("base")
    assert base.InvalidRequest("no").status == base.BadInstance("no").status == 400
    assert (str(base.InvalidRequest("slow down", 429)), base.InvalidRequest("slow down", 429).status) == (
        "slow down",
        429,
    )
    for status in (200, 302, 600, True, "400"):
        with pytest.raises(ValueError, match="a 4xx or 5xx status"):
            base.InvalidRequest("no", status)


@pytest.mark.parametrize("task", ["tensor", "text-classification", "image-classification"])
def test_a_task_that_needs_a_model_says_so_when_mar_build_json_names_none(tmp_path: Path, task: str):
    model_dir = assemble(tmp_path / "a", task)
    config = json.loads((model_dir / "mar_build.json").read_text())
    (model_dir / "mar_build.json").write_text(json.dumps({**config, "model": None}))
    with pytest.raises(ValueError, match=f"mar_build.json names no model, and the {task} task needs one"):
        load(model_dir)


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


# Subscripting these outside an annotation (a base class, a TypeVar bound, a cast) raises TypeError on 3.8.
_BUILTIN_GENERICS = {"list", "dict", "tuple", "set", "frozenset", "type"}


def _annotations(tree: ast.Module) -> set[int]:
    """Ids of every node inside an annotation: with ``from __future__ import annotations`` they never run."""
    roots: list[ast.expr | None] = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            args = node.args
            every = [*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg]
            roots += [node.returns, *(arg.annotation for arg in every if arg is not None)]
        elif isinstance(node, ast.AnnAssign):
            roots.append(node.annotation)
    return {id(child) for root in roots if root is not None for child in ast.walk(root)}


def _py38_problems(name: str, source: str) -> list[str]:
    tree = ast.parse(source, feature_version=(3, 8))
    runtime_generics = _BUILTIN_GENERICS | {
        alias.asname or alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module == "collections.abc"
        for alias in node.names
    }
    annotations = _annotations(tree)
    problems = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            if node.func.id == "isinstance" and any(isinstance(a, ast.BinOp) for a in node.args[1:]):
                problems.append(f"{name}:{node.lineno} isinstance with X | Y")
            if node.func.id == "zip" and any(k.arg == "strict" for k in node.keywords):
                problems.append(f"{name}:{node.lineno} zip(strict=)")
        if isinstance(node, ast.Attribute) and node.attr in ("removeprefix", "removesuffix"):
            problems.append(f"{name}:{node.lineno} str.{node.attr}")
        if (
            isinstance(node, ast.Subscript)
            and isinstance(node.value, ast.Name)
            and node.value.id in runtime_generics
            and id(node) not in annotations
        ):
            problems.append(f"{name}:{node.lineno} {node.value.id}[...] outside an annotation")
    if "from __future__ import annotations" not in source:
        problems.append(f"{name}: no 'from __future__ import annotations' (PEP 604/585 hints)")
    return problems


def test_handlers_run_on_the_python_of_older_torchserve_images():
    """Workers run the image's Python (3.8 in KServe's default image), not the toolkit's; mypy cannot check a
    3.8 target any more (mypy >= 1.17 starts at 3.9, 2.x at 3.10), so this does."""
    problems = [
        problem
        for path in sorted(HANDLERS.glob("*.py"))
        if path.stat().st_size
        for problem in _py38_problems(path.name, path.read_text(encoding="utf-8"))
    ]
    assert problems == []


def test_the_python_38_check_finds_what_fails_there():
    source = """from __future__ import annotations
from collections.abc import Callable, Mapping
from typing import List, TypeVar


class Ok(Base[List[int]]):
    table: dict[str, list[int]] = {}

    def f(self, x: Callable[[int], str], *rest: tuple[int, ...]) -> Mapping[str, int]: ...


class Bad(Base[list[int]]):
    T = TypeVar("T", bound=Mapping[str, int])
"""
    assert _py38_problems("m.py", source) == ["m.py:12 list[...] outside an annotation",
                                               "m.py:13 Mapping[...] outside an annotation"]


def test_answers_are_compact_json_text(scaler):
    """TorchServe sends a str answer as it is: every answer is already compact JSON (even a bare label)."""
    served = scaler()
    rows, headers = worker_batch([v1([1.5])])
    context = StandInContext(served.model_dir, 8)
    context.headers = headers
    assert served._handle(rows, context) == [json.dumps({"predictions": [3.0]}, separators=(",", ":"))]
