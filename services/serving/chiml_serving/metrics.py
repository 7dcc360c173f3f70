"""Prometheus metrics of an endpoint process, served on ``GET /metrics``.

* ``chiml_serving_requests_total{model, protocol, code}``: inference requests by V1/V2/gRPC
  protocol and HTTP status;
* ``chiml_serving_request_seconds{model, protocol, stage}``: latency histogram of each stage of
  an inference request: ``decode`` (body -> arrays), ``predict`` (the model), ``encode``
  (arrays -> body) and ``total``.

The label children are resolved once per (protocol, stage): ``Histogram.labels`` takes a lock
and a dict lookup, which would otherwise be paid several times per request. Only the
prometheus_client registry of this process is exposed (``--workers N`` processes each answer
for themselves, as kserve's ModelServer does).
"""

from __future__ import annotations

from functools import cache

from prometheus_client import REGISTRY, Counter, Histogram
from prometheus_client.exposition import choose_encoder

STAGES = ("decode", "predict", "encode", "total")
# sub-millisecond resolution: a small model answers in well under a millisecond
BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

REQUESTS = Counter("chiml_serving_requests", "Inference requests by protocol and HTTP status",
                   ["model", "protocol", "code"])
LATENCY = Histogram("chiml_serving_request_seconds", "Inference request latency by stage",
                    ["model", "protocol", "stage"], buckets=BUCKETS)


class StageTimer:
    """The histogram children of one model and protocol."""

    def __init__(self, model: str, protocol: str) -> None:
        self.model, self.protocol = model, protocol
        self.decode, self.predict, self.encode, self.total = (
            LATENCY.labels(model, protocol, stage) for stage in STAGES
        )

    def count(self, code: int) -> None:
        _counter(self.model, self.protocol, code).inc()


@cache
def _counter(model: str, protocol: str, code: int) -> Counter:
    return REQUESTS.labels(model, protocol, str(code))


def exposition(accept: str | None) -> tuple[bytes, str]:
    """(body, content type) of the registry in the format the scraper accepts."""
    encoder, content_type = choose_encoder(accept or "")
    return encoder(REGISTRY), content_type
