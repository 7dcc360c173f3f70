"""The custom-resource checks of tests/kube/schemas.py reject what the upstream types reject."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from .schemas import SchemaError, validate

RUNTIME: dict[str, Any] = {
    "apiVersion": "serving.kserve.io/v1alpha1",
    "kind": "ClusterServingRuntime",
    "metadata": {"name": "chiml-onnxruntime", "labels": {"app.kubernetes.io/part-of": "chiml"}},
    "spec": {
        "supportedModelFormats": [{"name": "onnx", "version": "1", "autoSelect": True, "priority": 1}],
        "protocolVersions": ["v2"],
        "annotations": {"prometheus.kserve.io/port": "8080"},
        "containers": [{"name": "kserve-container", "image": "ghcr.io/chiml-project/serving:0.1.0",
                        "args": ["--model_dir=/mnt/models"]}],
    },
}


def edited(path: list[Any], value: Any) -> dict[str, Any]:
    doc = copy.deepcopy(RUNTIME)
    node = doc
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return doc


def test_a_valid_runtime_passes():
    validate(copy.deepcopy(RUNTIME))


@pytest.mark.parametrize(
    "path, value, message",
    [
        (["spec", "supportedModelFormat"], [], "unknown field 'supportedModelFormat'"),
        # not a field of ServingRuntimeSpec in KServe's types (the hand-written list once allowed it)
        (["spec", "dnsPolicy"], "ClusterFirst", "unknown field 'dnsPolicy'"),
        (["spec", "supportedModelFormats"], [{"name": "onnx", "autoselect": True}], "unknown field 'autoselect'"),
        (["spec", "supportedModelFormats"], [{"name": "onnx", "priority": "1"}], "expected int"),
        (["spec", "multiModel"], "false", "expected bool"),
        (["spec", "containers"], [{"name": "c", "image": "i:1", "resource": {}}], "unknown field 'resource'"),
        (["metadata", "labels"], {"a": 1}, "expected str"),
    ],
)
def test_fields_and_types_come_from_the_kserve_models(path: list[Any], value: Any, message: str):
    with pytest.raises(SchemaError, match=message):
        validate(edited(path, value))
