# The two set-up commands of the README: `make run` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install run test test-fast test-deps benchmark exp metrics

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

# Whole pipeline on the embedded demo data (MNI152 from the nilearn wheel); no downloads.
run: $(STAMP)
	PATH=$(VENV)/bin:$$PATH dvc repro

# Test dependencies outside the venv: Debian's chromium renders the report in tests/test_report.py.
# Installed here when running as root; otherwise the reason is printed and those tests skip.
test-deps:
	@if command -v chromium >/dev/null 2>&1; then \
		echo "test-deps: chromium found at $$(command -v chromium)"; \
	elif [ "$$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then \
		echo "test-deps: chromium is missing and installing it needs root and apt-get: the report browser tests will skip"; \
	else \
		echo "test-deps: installing Debian's chromium (apt-get)"; \
		DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null || \
		echo "test-deps: apt-get install chromium failed: the report browser tests will skip"; \
	fi

# One pytest worker per core (pytest-xdist), each test file on one worker, one OpenMP thread per worker: the
# tests train tiny networks, which gain nothing from a second thread and lose 10x when two workers' threads
# fight over the cores (fast tier on 2 cores: 64 s with 2 threads per worker, 38 s with one).
TEST_RUN := OMP_NUM_THREADS=1 PATH=$(VENV)/bin:$$PATH $(PY) -m pytest -q -n auto --dist loadfile
test: $(STAMP) test-deps
	$(TEST_RUN)

# The inner loop: every test but the slow tier (tests/conftest.py). CI and the README run `make test`.
test-fast: $(STAMP)
	$(TEST_RUN) -m "not slow"

benchmark: $(STAMP)
	PATH=$(VENV)/bin:$$PATH $(PY) -m benchmarks.run

# The pipeline's own commands with the venv on PATH (dvc runs `python -m src.<stage>`):
#   make exp ARGS='-S train.lambda_cycle=10'     make metrics
exp: $(STAMP)
	PATH=$(VENV)/bin:$$PATH dvc exp run $(ARGS)

metrics: $(STAMP)
	PATH=$(VENV)/bin:$$PATH dvc exp show --only-changed --md
