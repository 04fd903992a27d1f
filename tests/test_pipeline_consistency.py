"""dvc.yaml, params.yaml and the stage modules agree with each other."""

import ast
import itertools
import re
import dataclasses
import os
import subprocess
import sys
import typing
from pathlib import Path

import pytest
import yaml

from src.config import Params

REPO = Path(__file__).resolve().parents[1]
DVC = yaml.safe_load((REPO / "dvc.yaml").read_text())
PARAMS = yaml.safe_load((REPO / "params.yaml").read_text())
# A `foreach` stage (train_cyclegan@sim, @classical) is checked through its `do` body.
STAGES = {name: stage["do"] if "foreach" in stage else stage for name, stage in DVC["stages"].items()}
ITEMS = {name: stage.get("foreach", [""]) for name, stage in DVC["stages"].items()}


def config_sections(cls: type = Params, path: str = "") -> dict[str, tuple[str, ...]]:
    """{section class name: its dotted paths}: {"Params": ("",), "TrainConfig": ("train",), ...}; a class used
    at several places has several (RandomizationConfig: segmenter.randomization, evaluate.randomization)."""
    sections = {cls.__name__: (path,)}
    for name, tp in typing.get_type_hints(cls).items():
        if dataclasses.is_dataclass(tp):
            for section, paths in config_sections(tp, f"{path}.{name}".lstrip(".")).items():
                sections[section] = sections.get(section, ()) + paths
    return sections


def config_leaves(cls: type = Params, prefix: str = "") -> list[str]:
    """Every dotted leaf key of the typed config."""
    keys = []
    for name, tp in typing.get_type_hints(cls).items():
        key = f"{prefix}.{name}" if prefix else name
        keys.extend(config_leaves(tp, key) if dataclasses.is_dataclass(tp) else [key])
    return keys


SECTIONS = config_sections()
CONFIG_KEYS = config_leaves()


def listed_params(stage: dict) -> list[str]:
    return [p for p in stage.get("params", []) if isinstance(p, str)]


def covered(key: str, listed: list[str]) -> bool:
    return any(key == p or key.startswith(p + ".") for p in listed)


def output_paths(stage: dict) -> list[str]:
    return [next(iter(entry)) if isinstance(entry, dict) else entry for entry in stage.get("outs", [])]


@pytest.mark.slow  # one interpreter start per stage (about 7 s each on the 2-core machine)
@pytest.mark.parametrize("name", sorted(STAGES))
def test_stage_cmd_runs_and_its_help_names_its_outputs(name):
    module = f"python -m src.launch ${{train.nproc}} src.{name}" if name.startswith("train_") else f"python -m src.{name}"
    assert STAGES[name]["cmd"].split(" --input")[0] == module, \
        "one module per stage, named after it; the training stages through src.launch (torchrun when train.nproc > 1)"
    if name.startswith("train_"):
        assert "src/launch.py" in STAGES[name]["deps"], "the launcher of a training stage's cmd is one of its deps"
    result = subprocess.run([sys.executable, "-m", f"src.{name}", "--help"], cwd=REPO, capture_output=True,
                            text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, f"python -m src.{name} --help failed:\n{result.stderr[-3000:]}"
    assert result.stdout.startswith(f"usage: python -m src.{name}"), result.stdout[:300]
    text = "".join(result.stdout.split())  # argparse re-wraps the description
    outputs = [out.replace("${item}", item) for out in output_paths(STAGES[name]) for item in ITEMS[name]]
    unnamed = [out for out in outputs if Path(out).name not in text or Path(out).parent.name not in text]
    assert not unnamed, f"`python -m src.{name} --help` does not name its dvc.yaml outputs {unnamed}"


@pytest.mark.parametrize("name", sorted(STAGES))
def test_stage_params_exist_in_params_yaml_and_config(name):
    for key in listed_params(STAGES[name]):
        node = PARAMS
        for part in key.split("."):
            assert isinstance(node, dict) and part in node, f"{name}: params key {key} not in params.yaml"
            node = node[part]
        assert any(k == key or k.startswith(key + ".") for k in CONFIG_KEYS), f"{key} not in src/config.py"


# ---------------------------------------------------------------- which params a stage reads
def module_closure(path: Path, root: Path, seen: set[Path] | None = None) -> set[Path]:
    """`path` and every src/ file it reaches through `import src...` / `from src... import` (transitively)."""
    seen = set() if seen is None else seen
    if path in seen or not path.is_file():
        return seen
    seen.add(path)
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "src":
            names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]  # a name may be a module
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names if alias.name.split(".")[0] == "src"]
        else:
            continue
        for name in names:
            base = root / name.replace(".", "/")
            module_closure(base.with_suffix(".py"), root, seen)
            module_closure(base / "__init__.py", root, seen)
    return seen


def _chain(node: ast.AST) -> str | None:
    """'cfg.sr.lr' for an attribute chain on a name; 'load_params().weights' for one on a load_params call."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
    elif isinstance(node, ast.Call) and "load_params" in (getattr(node.func, "id", None), getattr(node.func, "attr", None)):
        parts.append("load_params()")
    else:
        return None
    return ".".join(reversed(parts))


def _resolve(node: ast.AST, env: dict[str, str]) -> str | None:
    """The config path a chain stands for: its longest prefix bound in `env`, then the remaining attributes."""
    chain = _chain(node)
    parts = chain.split(".") if chain else []
    for i in range(len(parts), 0, -1):
        head = ".".join(parts[:i])
        if head in env:
            return ".".join(part for part in [env[head], *parts[i:]] if part)
    return None


def _annotated_section(annotation: ast.AST | None) -> tuple[str, ...] | None:
    """The config paths of a parameter annotated with exactly one section class (`cfg: SegmenterConfig`)."""
    names = set()
    for node in ast.walk(annotation) if annotation is not None else []:
        if isinstance(node, (ast.Name, ast.Attribute, ast.Constant)):  # Params, config.Params, "Params"
            names.add(node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else node.value)
    paths = [SECTIONS[name] for name in names if isinstance(name, str) and name in SECTIONS]
    return paths[0] if len(paths) == 1 else None


def _bindings(node: ast.AST):
    """(target chain, value node) pairs of an assignment, tuples unpacked pairwise."""
    if isinstance(node, ast.Assign):
        for target in node.targets:
            if isinstance(target, ast.Tuple) and isinstance(node.value, ast.Tuple) and len(target.elts) == len(node.value.elts):
                yield from ((_chain(t), v) for t, v in zip(target.elts, node.value.elts))
            else:
                yield _chain(target), node.value
    elif isinstance(node, ast.AnnAssign) and node.value is not None:
        yield _chain(node.target), node.value


def _scope_reads(body: list[ast.AST], env: dict[str, str], reads: set[str]) -> dict[str, str]:
    """Add to `reads` the config path of every attribute chain in one scope; return the scope's aliases.

    Aliases: names bound (anywhere in the scope, to a fixpoint) to a chain that resolves, e.g.
    `cfg, train_cfg = params.train.sr, params.train` or `self.params = params`.
    """
    env, nodes, nested, stack = dict(env), [], [], list(body)
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
            nested.append(node)
            continue
        nodes.append(node)
        stack.extend(ast.iter_child_nodes(node))
    changed = True
    while changed:
        changed = False
        for node in nodes:
            for target, value in _bindings(node):
                path = _resolve(value, env)
                if target and path is not None and env.get(target) != path:
                    env[target], changed = path, True
    reads.update(path for node in nodes if isinstance(node, ast.Attribute) and (path := _resolve(node, env)) is not None)
    for node in nested:
        if isinstance(node, ast.ClassDef):
            _class_reads(node, env, reads)
        else:
            _function_reads(node, env, reads)
    return env


def _function_reads(fn: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda, env: dict[str, str],
                    reads: set[str]) -> dict[str, str]:
    """A function sees the enclosing aliases, its parameters annotated with a section, and not
    the enclosing aliases that its other parameters shadow."""
    inner, choices = dict(env), {}
    args = fn.args
    for arg in [*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg]:
        if arg is not None:
            paths = _annotated_section(arg.annotation)
            if paths is None:
                inner.pop(arg.arg, None)
            else:
                choices[arg.arg] = paths
    # A section class used at several paths: the function reads each of them, whichever it is given.
    names = list(choices)
    envs = [_scope_reads(fn.body if isinstance(fn.body, list) else [fn.body], {**inner, **dict(zip(names, combo))}, reads)
            for combo in itertools.product(*(choices[name] for name in names))]
    return envs[0]


def _class_reads(cls: ast.ClassDef, env: dict[str, str], reads: set[str]) -> None:
    """Methods share `self.x` aliases: a field `params: Params`, or `self.params = params` in any method."""
    class_env = dict(env)
    for node in cls.body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            paths = _annotated_section(node.annotation)
            if paths is not None:
                class_env[f"self.{node.target.id}"] = paths[0]  # no class field holds a section used at several paths
    for _ in range(2):  # the second pass sees the self.x bound in any method during the first
        for method in cls.body:
            if isinstance(method, (ast.FunctionDef, ast.AsyncFunctionDef)):
                method_env = _function_reads(method, class_env, reads)
                class_env.update({k: v for k, v in method_env.items() if k.startswith("self.")})


def module_reads(path: Path) -> set[str]:
    """Dotted config paths a module reads through attribute chains (`params.train.device`, `cfg.lr`)."""
    reads: set[str] = set()
    _scope_reads(ast.parse(path.read_text()).body, {"load_params()": ""}, reads)
    return reads


def unread_params(stage: str, root: Path = REPO) -> list[str]:
    """Config leaves a stage lists in dvc.yaml (a section stands for all its leaves) but never reads.

    Read means: its module, or a src module it imports (transitively), has an attribute chain
    that resolves to exactly that key. Passing a whole section on (`as_dict(cfg)`) is no read,
    and neither is the validation in src/config.py.
    """
    spec = yaml.safe_load((root / "dvc.yaml").read_text())["stages"][stage]
    spec = spec.get("do", spec)
    # A param templated into the command (torchrun --nproc-per-node=${train.nproc}) is read by DVC itself.
    templated = set(re.findall(r"\$\{([\w.]+)\}", spec["cmd"]))
    listed = [key for key in listed_params(spec) if key not in templated]
    files = module_closure(root / "src" / f"{stage}.py", root) - {root / "src" / "config.py"}
    reads = set().union(*(module_reads(path) for path in files))
    return sorted(key for key in CONFIG_KEYS
                  if covered(key, listed) and not any(r == key or r.startswith(key + ".") for r in reads))


@pytest.mark.parametrize("name", sorted(name for name, stage in STAGES.items() if listed_params(stage)))
def test_every_listed_param_is_read_by_its_stage(name):
    """A listed param the stage never reads would re-run it for nothing."""
    assert unread_params(name) == [], f"{name} lists params in dvc.yaml that it never reads"


FAKE_STAGE = '''
from src.config import Params
from src.fake_helpers import retries


class Metrics:
    def __init__(self, params: Params):
        self.params = params

    def batch(self):
        return self.params.evaluate.batch_size


def run(params: Params, runtime):
    train_cfg, ev = params.train, params.evaluate

    def closure():
        return ev.kid_subsets

    def shadowed(params):  # not the config: must not count as reading train.resume
        return params.train.resume

    return (params.seed, train_cfg.amp, runtime.device, retries(train_cfg), closure(), shadowed(None),
            {READS})
'''


def test_unread_params_reports_exactly_the_params_a_stage_lists_but_never_reads(tmp_path):
    """The checker on a deliberately broken stage: it lists train.device and train.resume, reads neither."""
    listed = ["seed", "train.device", "train.amp", "train.resume", "train.max_nan_retries", "evaluate"]
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"fake": {"cmd": "python -m src.fake", "params": listed}}}))
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "fake_helpers.py").write_text(
        "from src.config import TrainConfig\n\n\ndef retries(train: TrainConfig) -> int:\n    return train.max_nan_retries\n")
    evaluate_keys = [key.split(".", 1)[1] for key in CONFIG_KEYS if key.startswith("evaluate.")]
    others = [f"ev.{k}" for k in evaluate_keys if k not in ("batch_size", "kid_subsets", "n_examples")]
    stage = tmp_path / "src" / "fake.py"
    stage.write_text(FAKE_STAGE.replace("{READS}", ", ".join(others)))
    # runtime.device ends in "device" and shadowed() reads a `params.train.resume` that is not the config's.
    assert unread_params("fake", tmp_path) == ["evaluate.n_examples", "train.device", "train.resume"]

    stage.write_text(stage.read_text() + "\n\ndef fixed(params: Params):\n"
                     "    return params.train.device, params.train.resume, params.evaluate.n_examples\n")
    assert unread_params("fake", tmp_path) == []


def test_lambda_cycle_reruns_only_the_cyclegan_side():
    users = {name for name, stage in STAGES.items() if covered("train.lambda_cycle", listed_params(stage))}
    assert users == {"train_cyclegan"}
    for upstream in ("prepare", "train_segmenter", "train_sr"):
        assert not covered("train.lambda_cycle", listed_params(STAGES[upstream]))


def test_every_config_key_is_listed_by_some_stage():
    listed = [p for stage in STAGES.values() for p in listed_params(stage)]
    unlisted = sorted(k for k in CONFIG_KEYS if not covered(k, listed))
    assert unlisted == [], f"params no stage depends on (changing them would silently do nothing): {unlisted}"


@pytest.mark.parametrize("name", sorted(STAGES))
def test_stage_deps_cover_every_reached_src_module(name):
    """Every src module a stage reaches is a dep, so any code change re-runs the stage."""
    deps = [d for d in STAGES[name].get("deps", []) if isinstance(d, str)]
    for path in sorted(module_closure(REPO / "src" / f"{name}.py", REPO)):
        if path.name == "__init__.py":
            continue
        path = path.relative_to(REPO).as_posix()
        assert any(path == d or path.startswith(d.rstrip("/") + "/") for d in deps), \
            f"{name} reaches {path} but dvc.yaml does not list it"


def test_metrics_and_plots_are_not_cached():
    for name, stage in STAGES.items():
        for section in ("metrics", "plots"):
            for entry in stage.get(section, []):
                (path, opts), = entry.items() if isinstance(entry, dict) else ((entry, {}),)
                assert opts.get("cache") is False, f"{name}: {section} {path} must have cache: false"
