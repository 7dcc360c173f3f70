"""Plain kserve ModelServer serving a joblib scikit-learn model: what kserve's own sklearnserver
does (load the file, ``get_predict_input`` -> ``model.predict`` -> ``get_predict_response``),
with its defaults except gRPC off and REST on loopback (kserve 0.21 hard-codes 0.0.0.0 in its
RESTServer). A peer of the serving benchmark, not part of chiml.

    python benchmarks/peers/kserve_sklearn.py MODEL.joblib NAME HTTP_PORT
"""

from __future__ import annotations

import sys
from typing import Any

import joblib
from kserve import Model, ModelServer
from kserve.protocol.rest import server as rest_server
from kserve.utils.utils import get_predict_input, get_predict_response


def _loopback(init: Any) -> Any:
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        self.config.host = "127.0.0.1"

    return __init__


class SKLearnModel(Model):
    def __init__(self, name: str, path: str) -> None:
        super().__init__(name)
        self.path = path

    def load(self) -> bool:
        self._model = joblib.load(self.path)
        self.ready = True
        return self.ready

    def predict(self, payload: Any, headers: Any = None, response_headers: Any = None) -> Any:
        instances = get_predict_input(payload)
        return get_predict_response(payload, self._model.predict(instances), self.name)


if __name__ == "__main__":
    path, name, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    rest_server.RESTServer.__init__ = _loopback(rest_server.RESTServer.__init__)  # type: ignore[method-assign]
    model = SKLearnModel(name, path)
    model.load()
    ModelServer(http_port=port, enable_grpc=False, workers=1).start([model])
