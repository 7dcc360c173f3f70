# Serving: endpoints, the MLflow pyfunc runtime, the V2 client.
.PHONY: serving-test serving-lifecycle bench-endpoint

serving-test: install ## serving unit tests (real kserve servers and supervisord; no MLflow server)
	$(BIN)/python -m pytest -q -m "not e2e" tests/serving

serving-lifecycle: install ## serving end to end on a real local platform (deploy, predict, scale, down/up, delete)
	$(BIN)/python -m pytest -q -m e2e tests/serving

bench-endpoint: install ## endpoint latency p50/p99, batch 1 and 64 (benchmarks/results/endpoint.json)
	$(BIN)/python benchmarks/run_all.py endpoint
