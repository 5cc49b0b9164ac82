"""Arbitrary names, labels and annotations either read back exactly from the rendered YAML or are refused clearly.

The oracle is Kubernetes' own rules, written here independently of toolkit/_render/: a value the rules allow
must be accepted and read back unchanged (no YAML typing of 'yes', 'null' or '012', no injected keys); a value they
forbid must be refused with a RenderError or SpecError.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from toolkit._errors import RenderError, SpecError
from toolkit._render import Manifests, render

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Kubernetes rules (apimachinery validation): qualified names, label values, DNS-1035 and DNS-1123 labels.
NAME_PART = r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
PREFIX = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
DNS1035 = r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?"
DNS1123 = r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?"

# Strings YAML would re-type, split, comment out or treat as structure if written raw.
TRICKY = [
    "yes", "no", "Yes", "NO", "on", "off", "y", "n", "true", "False", "null", "Null", "~", "", " ", "123", "012",
    "0x1F", "0o17", "1e3", "1_000", ".inf", "-.inf", ".nan", "1.0", "-1", "+1", "2001-12-14", "12:30:00",
    "-", "- item", "#", "# comment", "a #b", "{", "}", "{a: b}", "[", "[1, 2]", "a: b", "a:b", ":", "key:",
    "'", "''", '"', '""', "\\", "\\n", "\n", "a\nb", "\r\n", "\t", "---", "...", "&anchor", "*alias", "!tag",
    "!!str", "%YAML", "@", "`", "|", ">", "?", ",", "é", "日本語", "😀", "\u2028", "\u2029", "\ufeff", "\x00",
    "\x07", "\x1b[31m", "\x7f", "\ud7ff", "\ue000",
]
text = st.one_of(
    st.sampled_from(TRICKY),
    st.text(max_size=30),
    st.lists(st.sampled_from(TRICKY), max_size=4).map("".join),
)
YAML_WORDS = ["yes", "no", "on", "off", "y", "n", "true", "False", "null", "Null", "NaN", "123", "012", "0x1F",
              "1e3", "1_000", "1.0", "0o17", "2001-12-14"]
label_value = st.one_of(
    st.sampled_from(YAML_WORDS), st.from_regex(rf"\A({NAME_PART})?\Z"), text,
)
qualified_name = st.builds(
    lambda prefix, name: f"{prefix}/{name}" if prefix else name,
    st.one_of(st.none(), st.from_regex(rf"\A{PREFIX}\Z").filter(lambda p: len(p) <= 253)),
    st.from_regex(rf"\A{NAME_PART}\Z"),
)
valid_key = st.one_of(qualified_name, st.sampled_from(YAML_WORDS))
key = st.one_of(valid_key, text)


YAML11_BREAKS = {"\x85", "\u2028", "\u2029"}


def allowed_key(k: str) -> bool:
    prefix, slash, name = k.rpartition("/")
    if slash and not (len(prefix) <= 253 and re.fullmatch(PREFIX, prefix)):
        return False
    return re.fullmatch(NAME_PART, name) is not None


def allowed_label_value(v: str) -> bool:
    return v == "" or re.fullmatch(NAME_PART, v) is not None


def reads_back(manifests: Manifests) -> dict[str, Any]:
    """The InferenceService as a YAML reader sees the text, with nothing injected around the values."""
    documents = list(yaml.safe_load_all(manifests.text))
    assert documents == manifests.documents
    isvc = documents[-1]
    assert set(isvc) == {"apiVersion", "kind", "metadata", "spec"}
    assert set(isvc["metadata"]) <= {"name", "namespace", "labels", "annotations"}
    assert set(isvc["spec"]) == {"predictor"}
    assert isvc["spec"]["predictor"]["model"]["storageUri"] == "pvc://claim/layout"
    return isvc


def attempt(**options: Any) -> Manifests | Exception:
    try:
        manifests = render(storage_uri="pvc://claim/layout", **options)
    except (RenderError, SpecError) as exc:
        assert exc.message.strip()
        event("refused")
        return exc
    event("accepted")
    return manifests


@FAST
@given(name=st.one_of(st.from_regex(rf"\A{DNS1035}\Z"), st.sampled_from(YAML_WORDS), text))
@example(name="torchserve\n")
@example(name="null")
@example(name="yes")
def test_isvc_names(name: str) -> None:
    result = attempt(name=name)
    if re.fullmatch(DNS1035, name):
        assert isinstance(result, Manifests), f"{name!r} is a DNS-1035 label but was refused: {result}"
        assert reads_back(result)["metadata"]["name"] == name
    else:
        assert isinstance(result, Exception), f"{name!r} is not a DNS-1035 label but was accepted"
        assert "DNS-1035" in str(result)


@FAST
@given(namespace=st.one_of(st.from_regex(rf"\A{DNS1123}\Z"), st.sampled_from(YAML_WORDS), text))
@example(namespace="123")
@example(namespace="no")
def test_namespaces(namespace: str) -> None:
    result = attempt(name="m", namespace=namespace)
    if re.fullmatch(DNS1123, namespace):
        assert isinstance(result, Manifests), f"{namespace!r} was refused: {result}"
        assert reads_back(result)["metadata"]["namespace"] == namespace
    else:
        assert isinstance(result, RenderError) and "namespace" in result.message


@FAST
@given(labels=st.dictionaries(valid_key, label_value, max_size=4))
@example(labels={"yes": "no", "null": "012", "app": "1e3"})
@example(labels={"team": "x\ny"})
@example(labels={"team": "a: b"})
@example(labels={"team": "-lead"})
def test_label_values(labels: dict[str, str]) -> None:
    check_labels(labels)


@FAST
@given(labels=st.dictionaries(key, st.sampled_from(["v", "", "yes"]), max_size=3))
@example(labels={"a: b": "c"})
@example(labels={"-lead": "v"})
@example(labels={"Example.com/x": "v"})
@example(labels={"/x": "v"})
def test_label_keys(labels: dict[str, str]) -> None:
    check_labels(labels)


def check_labels(labels: dict[str, str]) -> None:
    result = attempt(name="m", labels=labels)
    if all(allowed_key(k) and allowed_label_value(v) for k, v in labels.items()):
        assert isinstance(result, Manifests), f"{labels!r} are valid labels but were refused: {result}"
        written = reads_back(result)["metadata"].get("labels", {})
        assert written == labels
        assert all(type(k) is str and type(v) is str for k, v in written.items())
    else:
        assert isinstance(result, RenderError) and "label" in result.message


@FAST
@given(annotations=st.dictionaries(valid_key, text, max_size=4))
@example(annotations={"note": "a: b # c\n- d\n{e}\n'f' \"g\""})
@example(annotations={"example.com/x": "yes", "example.com/y": "null", "example.com/z": "012"})
@example(annotations={"k": "---\napiVersion: v1\nkind: Secret"})
def test_annotation_values(annotations: dict[str, str]) -> None:
    check_annotations(annotations)


@FAST
@given(annotations=st.dictionaries(key, st.just("v"), max_size=3))
@example(annotations={"a: b": "v"})
@example(annotations={"#x": "v"})
def test_annotation_keys(annotations: dict[str, str]) -> None:
    check_annotations(annotations)


def check_annotations(annotations: dict[str, str]) -> None:
    result = attempt(name="m", annotations=annotations)
    if not all(allowed_key(k) for k in annotations):
        assert isinstance(result, RenderError) and "annotation key" in result.message
        return
    # Any string is an annotation value. Those with YAML 1.1 line breaks may be refused for now: see
    # test_yaml11_line_breaks_in_an_annotation below.
    if isinstance(result, Exception):
        assert any(YAML11_BREAKS & set(v) for v in annotations.values()), (
            f"{annotations!r} are valid annotations but were refused: {result}"
        )
        assert isinstance(result, RenderError) and "line break" in result.message
        return
    written = reads_back(result)["metadata"].get("annotations", {})
    assert written == annotations
    assert all(type(v) is str for v in written.values())


def test_yaml11_line_breaks_that_read_back_are_accepted() -> None:
    manifests = render(name="m", storage_uri="pvc://claim/layout", annotations={"note": "a\u2028b\u2029c"})
    assert reads_back(manifests)["metadata"]["annotations"] == {"note": "a\u2028b\u2029c"}


@pytest.mark.parametrize("value", ["a\x85b", " \u2028", "x \u2029"])
def test_yaml11_line_breaks_in_an_annotation(value: str) -> None:
    manifests = render(name="m", storage_uri="pvc://claim/layout", annotations={"note": value})
    assert reads_back(manifests)["metadata"]["annotations"] == {"note": value}
