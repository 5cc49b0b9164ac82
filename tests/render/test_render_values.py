"""Values render checks and converts: storage URIs (their level in a layout), resource quantities, and label and
annotation values, which follow one rule with mar.yaml."""

from __future__ import annotations

import pytest

from toolkit import load_spec
from toolkit._errors import RenderError, SpecError
from toolkit._render import parse_quantity, render


@pytest.mark.parametrize(
    ("uri", "right"),
    [
        ("pvc://leeway/bert/model-store", "pvc://leeway/bert"),
        ("pvc://leeway/model-store/", "pvc://leeway"),
        ("s3://models/bert/config", "s3://models/bert"),
        ("s3://models/bert/config/config.properties", "s3://models/bert"),
        ("s3://models/bert/model-store/bert.mar", "s3://models/bert"),
        ("gs://bucket/a/b/model-store", "gs://bucket/a/b"),
    ],
)
def test_storage_uri_inside_a_layout_names_the_right_level(uri, right):
    with pytest.raises(RenderError, match="points inside a layout") as info:
        render(name="m", storage_uri=uri)
    assert info.value.hint == f"use --storage-uri {right}"


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("/home/jovyan/layout", "not a storage URI"),
        ("layout", "not a storage URI"),
        ("file:///mnt/models", "file://"),
        ("hf://org/model", "Hugging Face"),
        ("ftp://host/x", "not a scheme"),
        ("s3://", "has no bucket"),
        ("pvc://Bad_Claim/x", "PersistentVolumeClaim name"),
        ("s3://models/a b", "whitespace"),
        ("s3://models/../x", "'..'"),
    ],
)
def test_bad_storage_uris(uri, message):
    with pytest.raises(RenderError, match=message):
        render(name="m", storage_uri=uri)


@pytest.mark.parametrize(
    "uri", ["pvc://leeway", "pvc://leeway/bert", "s3://models/bert/", "gs://models/p", "https://host/layout.tar.gz",
            "oci://registry.example.com/models/bert:1.0", "hdfs://nn/models/bert"],
)
def test_good_storage_uris(uri, validate):
    manifests = render(name="m", storage_uri=uri)
    assert manifests.documents[-1]["spec"]["predictor"]["model"]["storageUri"] == uri
    validate(manifests.documents)


@pytest.mark.parametrize(
    ("quantity", "value"),
    [("2", "2"), ("0.5", "0.5"), ("500m", "0.5"), (".5", "0.5"), ("0.5Gi", str(512 * 1024**2)),
     ("2Gi", str(2 * 1024**3)), ("1G", "1000000000"), ("1e3", "1000"), ("1E", "1000000000000000000"),
     ("+1Ki", "1024"), ("100n", "1.00E-7")],
)
def test_quantities(quantity, value):
    assert parse_quantity(quantity) == type(parse_quantity("1"))(value)


@pytest.mark.parametrize("quantity", ["2GB", "abc", "1.5.2", "", " 1", "1 Gi", "1e", "1e1.5", "0x10", "１"])
def test_bad_quantities_are_render_errors(quantity):
    with pytest.raises(RenderError, match="quantity") as info:
        render(name="m", storage_uri="pvc://x", limits={"memory": quantity})
    assert "limits.memory" in info.value.message
    assert info.value.hint and "512Mi" in info.value.hint


def test_negative_quantity():
    with pytest.raises(RenderError, match="'-1' is negative"):
        render(name="m", storage_uri="pvc://x", requests={"cpu": "-1"})


def test_request_above_limit():
    with pytest.raises(RenderError, match=r"requests.cpu \(4\) is more than limits.cpu \(2\)"):
        render(name="m", storage_uri="pvc://x", requests={"cpu": "4"}, limits={"cpu": "2"})
    with pytest.raises(RenderError, match="requests.memory"):
        render(name="m", storage_uri="pvc://x", requests={"memory": "2G"}, limits={"memory": "1.5Gi"})


# --------------------------------------------------------------------------------------------------------------
# Label and annotation values: one rule with mar.yaml (toolkit._names.scalar_string)


def test_numbers_and_booleans_are_the_strings_mar_yaml_makes_of_them(layout_factory, write_spec, hf_folder):
    values = {"tier": 1, "canary": True, "ratio": 0.5, "team": "nlp"}
    strings = {"tier": "1", "canary": "true", "ratio": "0.5", "team": "nlp"}
    # mar.yaml -> the spec -> the archive's defaults -> the InferenceService
    spec = load_spec(write_spec(name="m", task="embeddings", model=str(hf_folder),
                                kserve={"labels": values, "annotations": values}))
    assert spec.kserve.labels == strings and spec.kserve.annotations == strings
    from_spec = render(layout_factory({"m": spec.kserve}), storage_uri="pvc://x").documents[-1]["metadata"]
    # the same values given to render() directly (refused before: "must be a string")
    direct = render(name="m", storage_uri="pvc://x", labels=values, annotations=values).documents[-1]["metadata"]
    assert from_spec["labels"] == direct["labels"] == strings
    assert from_spec["annotations"] == direct["annotations"] == strings


@pytest.mark.parametrize("value", [None, [1], {"a": 1}])
def test_values_that_are_not_scalars_are_refused_by_both(value, write_spec, hf_folder):
    with pytest.raises(RenderError, match="labels: tier must be a string"):
        render(name="m", storage_uri="pvc://x", labels={"tier": value})
    with pytest.raises(SpecError, match="expected string keys and scalar values"):
        load_spec(write_spec(name="m", task="embeddings", model=str(hf_folder), kserve={"labels": {"tier": value}}))
