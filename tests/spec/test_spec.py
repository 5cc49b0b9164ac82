from __future__ import annotations

from pathlib import Path

import pytest

from toolkit import SpecError, load_spec
from toolkit._names import suggest_isvc_name
from toolkit._spec import check_isvc_name


def test_loads_every_section(tensor_spec) -> None:
    folder = tensor_spec(
        version=2, labels={"team": "nlp", "tier": 1}, metadata={"owner": "me"}, class_names=["a", "b"],
        options={"output": "argmax"},
        serving={"batch-size": 8, "max_batch_delay": 5, "min_workers": 1, "max_workers": 2},
        server={"netty_threads": 4, "job_queue_size": 100},
        kserve={"name": "lin-svc", "namespace": "ns", "resources": {"limits": {"cpu": 2}}},
    )
    spec = load_spec(folder)
    assert spec.version == "2"
    assert spec.labels == {"team": "nlp", "tier": "1"}
    assert spec.serving.batch_size == 8 and spec.serving.max_workers == 2
    assert spec.server.netty_threads == 4 and spec.server.job_queue_size == 100
    assert spec.kserve.name == "lin-svc" and spec.kserve.resources.limits == {"cpu": "2"}
    assert spec.model is not None and spec.model.is_absolute()
    assert spec.source == folder / "mar.yaml"


def test_overrides_win_over_the_file(tensor_spec) -> None:
    overrides = {"serving.batch_size": 2, "name": "other", "version": None}
    spec = load_spec(tensor_spec(serving={"batch_size": 8}), overrides)
    assert spec.serving.batch_size == 2 and spec.name == "other" and spec.version == "1.0"


@pytest.mark.parametrize(
    ("keys", "message", "hint"),
    [
        ({"nmae": "x"}, "unknown key 'nmae'", "did you mean 'name'?"),
        ({"serving": {"batchsize": 4}}, "unknown key 'batchsize'", "did you mean 'batch_size'?"),
        ({"kserve": {"namespce": "x"}}, "unknown key 'namespce'", "did you mean 'namespace'?"),
        ({"task": "text-clasification"}, "unknown task", "did you mean 'text-classification'?"),
        ({"name": "my model"}, "not a valid model name", "for example 'my-model'"),
        ({"name": "bert:v1"}, "not a valid model name", None),
        ({"serving": {"batch_size": True}}, "expected a whole number", None),
        ({"serving": {"batch_size": 0}}, "must be >= 1", None),
        ({"serving": {"min_workers": 3, "max_workers": 1}}, "min_workers (3) is larger", None),
        ({"kserve": {"name": "My_Service"}}, "not a valid InferenceService name", "for example 'my-service'"),
        ({"kserve": {"protocol": "v3"}}, "protocol must be v1 or v2", None),
        ({"model": "missing/folder"}, "does not exist", "relative to the folder"),
    ],
)
def test_bad_values_name_the_key_and_the_fix(tensor_spec, keys, message, hint) -> None:
    with pytest.raises(SpecError) as err:
        load_spec(tensor_spec(**keys))
    assert message in str(err.value)
    if hint:
        assert hint in str(err.value)


def test_missing_required_keys(write_spec) -> None:
    with pytest.raises(SpecError, match="missing required key 'task'"):
        load_spec(write_spec(name="x"))
    with pytest.raises(SpecError, match="needs a handler file"):
        load_spec(write_spec(name="x", task="custom"))


def test_missing_and_broken_files(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="does not exist") as err:
        load_spec(tmp_path)
    assert "mar-build init" in str(err.value)
    (tmp_path / "mar.yaml").write_text("name: [unclosed\n")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_spec(tmp_path)
    (tmp_path / "mar.yaml").write_text("- a list\n")
    with pytest.raises(SpecError, match="must be a mapping"):
        load_spec(tmp_path)


def test_class_names_from_list_mapping_and_files(tensor_spec, tmp_path: Path) -> None:
    assert load_spec(tensor_spec(class_names={1: "b", 0: "a"})).class_names == ["a", "b"]
    (tmp_path / "spec").mkdir(exist_ok=True)
    (tmp_path / "spec" / "index_to_name.json").write_text('{"1": "pos", "0": "neg"}')
    assert load_spec(tensor_spec(class_names="index_to_name.json")).class_names == ["neg", "pos"]
    (tmp_path / "spec" / "labels.txt").write_text("x\ny\n\n")
    assert load_spec(tensor_spec(class_names="labels.txt")).class_names == ["x", "y"]


def test_requirements_from_file(tensor_spec, tmp_path: Path) -> None:
    (tmp_path / "spec").mkdir(exist_ok=True)
    (tmp_path / "spec" / "requirements.txt").write_text("# pinned\nnumpy\n\nscipy>=1\n")
    assert load_spec(tensor_spec(requirements="requirements.txt")).requirements == ["numpy", "scipy>=1"]


@pytest.mark.parametrize("name", ["a", "torchserve", "my-model-2", "a" * 63])
def test_valid_isvc_names(name: str) -> None:
    assert check_isvc_name(name) == name


@pytest.mark.parametrize("name", ["", "Bert", "1model", "model-", "my_model", "a" * 64, "a.b"])
def test_invalid_isvc_names_get_a_valid_suggestion(name: str) -> None:
    with pytest.raises(SpecError) as err:
        check_isvc_name(name)
    suggestion = suggest_isvc_name(name)
    assert check_isvc_name(suggestion) == suggestion
    assert suggestion in str(err.value)


def test_label_and_annotation_values_are_the_strings_kubernetes_stores(tensor_spec) -> None:
    # One rule with render() (toolkit._names.scalar_string): text as is, numbers as written, true/false.
    values = {"tier": 1, "canary": True, "off": False, "ratio": 0.5, "team": "nlp"}
    strings = {"tier": "1", "canary": "true", "off": "false", "ratio": "0.5", "team": "nlp"}
    spec = load_spec(tensor_spec(labels=values, kserve={"labels": values, "annotations": values}))
    assert spec.labels == spec.kserve.labels == spec.kserve.annotations == strings


@pytest.mark.parametrize("value", [None, [1], {"a": "b"}])
@pytest.mark.parametrize("where", ["labels", "kserve.labels", "kserve.annotations"])
def test_label_values_that_are_not_scalars_are_refused(tensor_spec, where: str, value: object) -> None:
    section, _, key = where.rpartition(".")
    keys = {section: {key: {"tier": value}}} if section else {key: {"tier": value}}
    with pytest.raises(SpecError, match="expected string keys and scalar values") as err:
        load_spec(tensor_spec(**keys))
    assert where in str(err.value)


def test_a_yaml_date_is_not_a_label_value(tmp_path: Path, torchscript_model: Path) -> None:
    # PyYAML reads an unquoted 2026-12-01 as a date, which Kubernetes would not store as given: quote it.
    (tmp_path / "mar.yaml").write_text(
        f"name: lin\ntask: tensor\nmodel: {torchscript_model}\nlabels:\n  built: 2026-12-01\n", encoding="utf-8"
    )
    with pytest.raises(SpecError, match="scalar values") as err:
        load_spec(tmp_path)
    assert err.value.hint and "as text" in err.value.hint


def test_the_settings_dataclasses_are_importable_where_they_were() -> None:
    from toolkit._spec import parse, settings

    for name in ("KServeSettings", "ModelSpec", "Resources", "ServerSettings", "ServingSettings", "TASKS"):
        assert getattr(parse, name) is getattr(settings, name)
