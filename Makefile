# The two set-up commands of the README: `make run` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install run test benchmark clean-outputs

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

# Whole pipeline on the embedded demo data (MNI152 from the nilearn wheel); no downloads.
run: $(STAMP)
	PATH=$(VENV)/bin:$$PATH dvc repro

test: $(STAMP)
	PATH=$(VENV)/bin:$$PATH $(PY) -m pytest -q

benchmark: $(STAMP)
	PATH=$(VENV)/bin:$$PATH $(PY) -m benchmarks.run
