"""dvc.yaml, params.yaml and the stage modules agree with each other."""

import ast
import importlib.util
from pathlib import Path

import pytest
import yaml

from src.config import Params, section_keys

DVC = yaml.safe_load(open("dvc.yaml"))
PARAMS = yaml.safe_load(open("params.yaml"))
STAGES = DVC["stages"]
CONFIG_KEYS = set(section_keys(Params, ""))


def listed_params(stage: dict) -> list[str]:
    return [p for p in stage.get("params", []) if isinstance(p, str)]


def covered(key: str, listed: list[str]) -> bool:
    return any(key == p or key.startswith(p + ".") for p in listed)


@pytest.mark.parametrize("name", sorted(STAGES))
def test_stage_cmd_module_exists_and_has_help(name):
    cmd = STAGES[name]["cmd"]
    assert cmd == f"python -m src.{name}", "one module per stage, named after the stage"
    assert importlib.util.find_spec(f"src.{name}") is not None
    source = Path(f"src/{name}.py").read_text()
    assert "argparse.ArgumentParser" in source and "description=" in source


@pytest.mark.parametrize("name", sorted(STAGES))
def test_stage_params_exist_in_params_yaml_and_config(name):
    for key in listed_params(STAGES[name]):
        node = PARAMS
        for part in key.split("."):
            assert isinstance(node, dict) and part in node, f"{name}: params key {key} not in params.yaml"
            node = node[part]
        assert any(k == key or k.startswith(key + ".") for k in CONFIG_KEYS), f"{key} not in src/config.py"


def _attribute_chains(path: str) -> set[str]:
    """Dotted attribute chains used in a module, e.g. 'params.train.lambda_cycle', 'cfg.steps'."""
    chains = set()
    for node in ast.walk(ast.parse(Path(path).read_text())):
        if isinstance(node, ast.Attribute):
            parts = []
            cur = node
            while isinstance(cur, ast.Attribute):
                parts.append(cur.attr)
                cur = cur.value
            if isinstance(cur, ast.Name):
                parts.append(cur.id)
                chains.add(".".join(reversed(parts)))
    return chains


@pytest.mark.parametrize("name", ["train_sr", "train_cyclegan", "train_segmenter", "evaluate"])
def test_every_listed_section_is_read_by_its_stage(name):
    """A listed params section the stage never reads would re-run it for nothing."""
    chains = _attribute_chains(f"src/{name}.py")
    text = Path(f"src/{name}.py").read_text()
    for key in listed_params(STAGES[name]):
        leaf = key.split(".")[-1]
        assert any(c.endswith("." + leaf) or ("." + leaf + ".") in c for c in chains) or f"params.{leaf}" in text, \
            f"{name} lists {key} but never reads it"


def test_lambda_cycle_reruns_only_the_cyclegan_side():
    users = {name for name, stage in STAGES.items() if covered("train.lambda_cycle", listed_params(stage))}
    assert users == {"train_cyclegan"}
    for upstream in ("prepare", "train_segmenter", "train_sr"):
        assert not covered("train.lambda_cycle", listed_params(STAGES[upstream]))


def test_every_config_key_is_listed_by_some_stage():
    listed = [p for stage in STAGES.values() for p in listed_params(stage)]
    unlisted = sorted(k for k in CONFIG_KEYS if not covered(k, listed))
    assert unlisted == [], f"params no stage depends on (changing them would silently do nothing): {unlisted}"


def _src_imports(module_path: str, seen: set[str]) -> set[str]:
    """Every src/ file a module reaches through `from src... import` (transitively)."""
    if module_path in seen or not Path(module_path).exists():
        return seen
    seen.add(module_path)
    for node in ast.walk(ast.parse(Path(module_path).read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("src."):
            target = node.module.replace(".", "/")
            _src_imports(target + ".py" if Path(target + ".py").exists() else target + "/__init__.py", seen)
    return seen


@pytest.mark.parametrize("name", sorted(STAGES))
def test_stage_deps_cover_every_reached_src_module(name):
    """Every src module a stage reaches is a dep, so any code change re-runs the stage."""
    deps = [d for d in STAGES[name].get("deps", []) if isinstance(d, str)]
    for path in sorted(_src_imports(f"src/{name}.py", set())):
        if path.endswith("__init__.py"):
            continue
        assert any(path == d or path.startswith(d.rstrip("/") + "/") for d in deps), \
            f"{name} reaches {path} but dvc.yaml does not list it"


def test_metrics_and_plots_are_not_cached():
    for name, stage in STAGES.items():
        for section in ("metrics", "plots"):
            for entry in stage.get(section, []):
                (path, opts), = entry.items() if isinstance(entry, dict) else ((entry, {}),)
                assert opts.get("cache") is False, f"{name}: {section} {path} must have cache: false"
