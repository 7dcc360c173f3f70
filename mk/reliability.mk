# The reliability suite (also part of `make test`): kill -9 of every service and of supervisord,
# power cuts, state under parallel writers, fuzzed config/state/CLI input, secret exposure, and
# the endpoint servers' answers to malformed, oversized and slow requests (tests/serving).
# Its figures (restart times, counts) are printed at the end of the run.
.PHONY: reliability secrets-baseline

reliability: install ## crashes, bad input, concurrency and exposure, with the measured figures
	$(BIN)/python -m pytest tests/reliability tests/serving/test_bad_input.py -q --timeout=900 -p no:cacheprovider

secrets-baseline: install ## rescan tracked files into .secrets.baseline, keeping audit labels
	$(BIN)/python scripts/secrets_baseline.py
