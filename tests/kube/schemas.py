"""Schemas for the custom resources our charts render, derived from the CRDs' Go types.

kubernetes-validate ships the built-in kinds only. For KServe's ClusterServingRuntime we check
the spec's fields against ServingRuntimeSpec / ServingRuntimePodSpec (kserve
pkg/apis/serving/v1alpha1/servingruntime_types.go) and validate its pod part as a real PodSpec,
which it is a subset of; Traefik's Middleware is checked against its basicAuth fields
(traefik.io/v1alpha1, Traefik v3).
"""

from __future__ import annotations

from typing import Any

import jsonschema
import kubernetes_validate

# ServingRuntimeSpec (+ inline ServingRuntimePodSpec)
SERVING_RUNTIME_SPEC_FIELDS = {
    "supportedModelFormats", "modelSizeRange", "disabled", "routerConfig", "engineConfig", "decoderConfig",
    "protocolVersions", "workers", "multiModel", "grpcEndpoint", "grpcDataEndpoint", "httpDataEndpoint",
    "replicas", "storageHelper", "builtInAdapter", "annotations", "labels",
    # ServingRuntimePodSpec
    "containers", "volumes", "nodeSelector", "affinity", "tolerations", "imagePullSecrets", "schedulerName",
    "hostIPC", "dnsPolicy", "hostNetwork",
}
POD_SPEC_FIELDS = {
    "containers", "volumes", "nodeSelector", "affinity", "tolerations", "imagePullSecrets", "schedulerName",
    "hostIPC", "dnsPolicy", "hostNetwork",
}
SUPPORTED_MODEL_FORMAT = {
    "type": "object",
    "additionalProperties": False,
    "required": ["name"],
    "properties": {
        "name": {"type": "string", "minLength": 1},
        "version": {"type": "string"},
        "autoSelect": {"type": "boolean"},
        "priority": {"type": "integer", "minimum": 1},
    },
}
CLUSTER_SERVING_RUNTIME = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "serving.kserve.io/v1alpha1"},
        "metadata": {"type": "object", "required": ["name"], "not": {"required": ["namespace"]}},
        "spec": {
            "type": "object",
            "required": ["supportedModelFormats", "containers"],
            "propertyNames": {"enum": sorted(SERVING_RUNTIME_SPEC_FIELDS)},
            "properties": {
                "supportedModelFormats": {"type": "array", "minItems": 1, "items": SUPPORTED_MODEL_FORMAT},
                "protocolVersions": {"type": "array", "items": {"enum": ["v1", "v2", "grpc-v1", "grpc-v2"]}},
                "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
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


def validate(doc: dict[str, Any]) -> None:
    """Raise jsonschema/kubernetes_validate ValidationError for an invalid manifest."""
    kind = doc.get("kind")
    if kind == "ClusterServingRuntime":
        jsonschema.validate(doc, CLUSTER_SERVING_RUNTIME)
        pod_spec = {k: v for k, v in doc["spec"].items() if k in POD_SPEC_FIELDS}
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": doc["metadata"]["name"]}, "spec": pod_spec}
        kubernetes_validate.validate(pod, KUBERNETES_VERSION, strict=True)
    elif kind == "Middleware":
        jsonschema.validate(doc, MIDDLEWARE)
    else:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
