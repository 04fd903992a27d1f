"""Fixtures of the fault-injection suite (see README.md here for the list of cases)."""

from __future__ import annotations

import os
import shutil

import pytest
import torch
from faults_helpers import sr_tree


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny convolutions on a shared 2-core machine run ~10x faster on one intra-op thread than on two."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """An empty working directory: every stage takes its paths relative to it."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture(scope="session")
def finished_sr_run(tmp_path_factory):
    """A finished tiny run of both SR stages (train_sr_psnr: 20 steps, then train_sr: 10 GAN steps; checkpoints
    every 10): their checkpoints, live/ logs, g_psnr.pt, g_gan.pt and config.json. Tests work on copies (`sr_run`)."""
    from src import train_sr, train_sr_psnr
    root = sr_tree(tmp_path_factory.mktemp("finished_sr"))
    cwd, threads = os.getcwd(), torch.get_num_threads()
    os.chdir(root)
    torch.set_num_threads(1)
    try:
        assert train_sr_psnr.main(["--params", "params.yaml"]) == 0
        assert train_sr.main(["--params", "params.yaml"]) == 0
    finally:
        os.chdir(cwd)
        torch.set_num_threads(threads)
    return root


@pytest.fixture
def sr_run(finished_sr_run, tmp_path, monkeypatch):
    """A copy of the finished tiny SR runs, as the working directory."""
    root = tmp_path / "w"
    shutil.copytree(finished_sr_run, root)
    monkeypatch.chdir(root)
    return root


@pytest.fixture(scope="session")
def evaluated(tmp_path_factory):
    """A finished tiny evaluation (baselines, evaluate_sr, evaluate_sim2real, evaluate). Tests work on copies."""
    from tests.test_evaluate_errors import make_tree, run_evaluation, write_params
    root = tmp_path_factory.mktemp("evaluated")
    cwd, threads = os.getcwd(), torch.get_num_threads()
    os.chdir(root)
    torch.set_num_threads(1)
    try:
        make_tree(root)
        assert run_evaluation(write_params(root)) == 0
    finally:
        os.chdir(cwd)
        torch.set_num_threads(threads)
    return root
