# Serving (issue 3, second half): endpoints, the MLflow pyfunc runtime, the V2 client.
.PHONY: serving-test serving-lifecycle bench-endpoint

serving-test: install ## serving unit tests (real kserve servers and supervisord; no MLflow server)
	$(BIN)/python -m pytest -q -m "not e2e" tests/serving

serving-lifecycle: install ## serving end to end on a real local platform (deploy, predict, scale, down/up, delete)
	$(BIN)/python -m pytest -q -m e2e tests/serving

bench-endpoint: install ## every chiml runtime vs MLServer, kserve, mlflow serve: req/s, p50/p99, RSS (needs wrk)
	$(BIN)/python benchmarks/run_all.py endpoint
