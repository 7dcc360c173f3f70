# Serving: endpoints, the MLflow pyfunc runtime, the V2 client.
.PHONY: serving-test serving-lifecycle bench-endpoint

serving-test: install ## serving unit tests (real kserve servers and supervisord; no MLflow server)
	$(BIN)/python -m pytest -q -m "not e2e" tests/serving

serving-lifecycle: install ## serving end to end on a real local platform (deploy, predict, scale, down/up, delete)
	$(BIN)/python -m pytest -q -m e2e tests/serving

bench-endpoint: install ## every chiml runtime vs MLServer, kserve, mlflow serve: req/s, p50/p99, RSS (needs wrk)
	$(BIN)/python benchmarks/run_all.py endpoint

# The local endpoint front is HAProxy (>= 2.6) from the system's packages. `make up` and the CI's
# `make test-deps` install it when it is missing (apt as root or with sudo); elsewhere the
# target says how (brew install haproxy on macOS).
.PHONY: serving-deps
serving-deps: ## install HAProxy (the local endpoints' front) and wrk (the front benchmark) when missing
	@if command -v haproxy >/dev/null 2>&1 || test -x /usr/sbin/haproxy; then :; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	  echo "installing haproxy (the local endpoints' front)"; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends haproxy wrk; \
	elif command -v apt-get >/dev/null 2>&1 && command -v sudo >/dev/null 2>&1; then \
	  sudo apt-get update -q && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends haproxy wrk; \
	elif command -v brew >/dev/null 2>&1; then brew install haproxy wrk; \
	else echo "install HAProxy 2.6 or newer for local endpoints (https://www.haproxy.org/)" >&2; exit 1; fi

test-deps: serving-deps
up: serving-deps
