"""Schema checks for the custom resources our charts render.

kubernetes-validate ships the built-in kinds only. KServe's ClusterServingRuntime is checked
against the kserve SDK's generated models (``kserve.models``, generated from KServe's Go API
types; the SDK pinned in requirements/constraints.txt): every field name must be one the type
declares and every value must have the declared type, recursively through the Kubernetes types it
embeds (``kubernetes.client`` models); the pod part is then validated as a real PodSpec, which it
is a subset of. Traefik publishes no schema in a pip-installable form, so its Middleware is
checked against the basicAuth fields of traefik.io/v1alpha1 (Traefik v3) written out below.
"""

from __future__ import annotations

import re
from typing import Any

import jsonschema
import kubernetes.client
import kubernetes_validate
from kserve import constants as kserve_constants
from kserve import models as kserve_models

# openapi-generator's spellings (kserve: list[X] / dict(str, X); kubernetes: also List[X] / Dict[str, X])
LIST = re.compile(r"^(?:list|List)\[(.+)\]$")
DICT = re.compile(r"^(?:dict\(str, (.+)\)|Dict\[str, (.+)\])$")
PRIMITIVES: dict[str, tuple[type, ...]] = {"str": (str,), "bool": (bool,), "int": (int,), "float": (int, float)}


class SchemaError(ValueError):
    """A manifest does not match the upstream type."""


# kserve's generator spells some embedded Kubernetes types by their Go package path
# (K8sIoApiAppsV1DeploymentStrategy = apps/v1 DeploymentStrategy = kubernetes' V1DeploymentStrategy)
GO_PACKAGE_TYPE = re.compile(r"^K8sIoApi[A-Z][a-z]+(V\d+(?:(?:alpha|beta)\d+)?[A-Z]\w*)$")


def _model_class(name: str) -> type:
    if match := GO_PACKAGE_TYPE.match(name):
        name = match.group(1)
    for module in (kserve_models, kubernetes.client):
        cls = getattr(module, name, None)
        if cls is not None and hasattr(cls, "attribute_map"):
            return cls
    raise SchemaError(f"no model class {name} in kserve.models or kubernetes.client")


def check_type(value: Any, type_name: str, where: str) -> None:
    """``value`` (parsed YAML) against an openapi-generator type name such as ``list[V1Container]``."""
    if type_name == "object":
        return
    if type_name in PRIMITIVES:
        ok = isinstance(value, PRIMITIVES[type_name]) and not (type_name != "bool" and isinstance(value, bool))
        if not ok:
            raise SchemaError(f"{where}: expected {type_name}, got {type(value).__name__} {value!r}")
        return
    if match := LIST.match(type_name):
        if not isinstance(value, list):
            raise SchemaError(f"{where}: expected a list, got {type(value).__name__}")
        for i, item in enumerate(value):
            check_type(item, match.group(1), f"{where}[{i}]")
        return
    if match := DICT.match(type_name):
        if not isinstance(value, dict):
            raise SchemaError(f"{where}: expected a mapping, got {type(value).__name__}")
        for key, item in value.items():
            check_type(item, match.group(1) or match.group(2), f"{where}.{key}")
        return
    if type_name == "IntOrString" or type_name.startswith("datetime"):
        return
    check_model(value, _model_class(type_name), where)


def check_model(value: Any, cls: type, where: str) -> None:
    """Every key of ``value`` is a field of the generated model ``cls``, with a value of its type."""
    if not isinstance(value, dict):
        raise SchemaError(f"{where}: expected a {cls.__name__} mapping, got {type(value).__name__}")
    by_json_name = {json_name: attr for attr, json_name in cls.attribute_map.items()}
    for key, item in value.items():
        if key not in by_json_name:
            raise SchemaError(f"{where}: unknown field {key!r} ({cls.__name__} has {sorted(by_json_name)})")
        check_type(item, cls.openapi_types[by_json_name[key]], f"{where}.{key}")


# the fields of ServingRuntimeSpec that are a PodSpec's fields too (validated as a Pod below)
POD_SPEC_FIELDS = set(kubernetes.client.V1PodSpec.attribute_map.values())
CLUSTER_SERVING_RUNTIME = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": kserve_constants.KSERVE_V1ALPHA1},
        "metadata": {"type": "object", "required": ["name"], "not": {"required": ["namespace"]}},
        "spec": {
            "type": "object",
            "required": ["supportedModelFormats", "containers"],
            "properties": {
                "supportedModelFormats": {"type": "array", "minItems": 1},
                "protocolVersions": {"type": "array", "items": {"enum": ["v1", "v2", "grpc-v1", "grpc-v2"]}},
                "containers": {"type": "array", "minItems": 1},
            },
        },
    },
}
MIDDLEWARE = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "traefik.io/v1alpha1"},
        "metadata": {"type": "object", "required": ["name", "namespace"]},
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "basicAuth": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["secret"],
                    "properties": {
                        "secret": {"type": "string", "minLength": 1},
                        "realm": {"type": "string"},
                        "removeHeader": {"type": "boolean"},
                        "headerField": {"type": "string"},
                    },
                }
            },
        },
    },
}
KUBERNETES_VERSION = "1.35.0"


# KServe's admission webhook (pkg/apis/serving/v1beta1/inference_service_validation.go), the
# rules chiml's manifests touch: the name, the autoscaler class, and in Standard mode with the
# HPA a cpu (1-100 %) or memory metric.
ISVC_NAME = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
AUTOSCALER_CLASSES = {"hpa", "keda", "external", "none"}
HPA_METRICS = {"cpu", "memory"}


def check_inference_service(doc: dict[str, Any]) -> None:
    """An InferenceService against the kserve SDK's models and the webhook's rules."""
    check_model(doc, kserve_models.V1beta1InferenceService, doc.get("metadata", {}).get("name", "?"))
    if doc.get("apiVersion") != kserve_constants.KSERVE_V1BETA1:
        raise SchemaError(f"apiVersion {doc.get('apiVersion')!r} is not {kserve_constants.KSERVE_V1BETA1}")
    name = doc["metadata"]["name"]
    if not ISVC_NAME.match(name):
        raise SchemaError(f"InferenceService name {name!r} does not match {ISVC_NAME.pattern}")
    annotations = doc["metadata"].get("annotations") or {}
    autoscaler = annotations.get("serving.kserve.io/autoscalerClass")
    if autoscaler is not None and autoscaler not in AUTOSCALER_CLASSES:
        raise SchemaError(f"[{autoscaler}] is not a supported autoscaler class type")
    predictor = doc["spec"].get("predictor") or {}
    if annotations.get("serving.kserve.io/deploymentMode") == "Standard" and autoscaler == "hpa":
        metric = predictor.get("scaleMetric", "cpu")
        if metric not in HPA_METRICS:
            raise SchemaError(f"[{metric}] is not a supported metric")
        target = predictor.get("scaleTarget")
        if target is not None and metric == "cpu" and not 1 <= target <= 100:
            raise SchemaError("the target utilization percentage should be a [1-100] integer")
    if predictor.get("minReplicas", 1) > predictor.get("maxReplicas", predictor.get("minReplicas", 1)):
        raise SchemaError("minReplicas is more than maxReplicas")


def validate(doc: dict[str, Any]) -> None:
    """Raise SchemaError / jsonschema / kubernetes_validate ValidationError for an invalid manifest."""
    kind = doc.get("kind")
    if kind == "ClusterServingRuntime":
        jsonschema.validate(doc, CLUSTER_SERVING_RUNTIME)
        check_model(doc, kserve_models.V1alpha1ClusterServingRuntime, doc["metadata"]["name"])
        pod_spec = {k: v for k, v in doc["spec"].items() if k in POD_SPEC_FIELDS}
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": doc["metadata"]["name"]}, "spec": pod_spec}
        kubernetes_validate.validate(pod, KUBERNETES_VERSION, strict=True)
    elif kind == "InferenceService":
        check_inference_service(doc)
    elif kind == "Middleware":
        jsonschema.validate(doc, MIDDLEWARE)
    else:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
