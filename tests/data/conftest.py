"""Fixtures for the data tests: a working directory and a params file for `prepare`."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from datatest_helpers import base_params


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """An empty working directory (prepare takes every path relative to it)."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def write_params(workdir):
    def write(**data_overrides) -> Path:
        raw = base_params()
        sim = data_overrides.pop("sim", {})
        raw["data"].update(data_overrides)
        raw["data"]["sim"].update(sim)
        path = workdir / "params.yaml"
        path.write_text(yaml.safe_dump(raw, sort_keys=False))
        return path

    return write
