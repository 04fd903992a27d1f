"""Tests for the `weights` stage (src/weights.py) and its reader (src/pretrained.py).

No test touches the real hub cache or the network: the hub dir is a tmp folder, VGG19 and
Inception are replaced by a tiny stand-in check, and "offline" is either a DNS failure or a
local server that accepts the connection and never finishes the reply. ResNet-18 goes
through the real strict-load check with a random-init torchvision state dict.
"""

import hashlib
import json
import logging
import socket
import threading
import time
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn
from torchvision.models import resnet18

from src import weights
from src.pretrained import read_manifest, weight_file
from src.weight_sources import CHECKS, WeightSpec, copy_into, resolve, weight_specs, write_manifest

REPO = Path(__file__).resolve().parents[1]
NAMES = {"vgg19", "inception_fid", "resnet18"}


def file_sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def tiny_net() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 2, 3), nn.Conv2d(2, 1, 1))


def tiny_check(path: Path) -> None:
    """Stand-in for the 500 MB architectures: the file must load strictly into `tiny_net`."""
    tiny_net().load_state_dict(torch.load(path, map_location="cpu", weights_only=True))


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """An empty torch hub dir; torch.hub's own functions look it up through the patched get_dir too."""
    hub_dir = tmp_path / "hub"
    (hub_dir / "checkpoints").mkdir(parents=True)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(hub_dir))
    return hub_dir


@pytest.fixture
def stand_in_checks(monkeypatch):
    monkeypatch.setitem(CHECKS, "vgg19", tiny_check)
    monkeypatch.setitem(CHECKS, "inception_fid", tiny_check)


@pytest.fixture
def offline(monkeypatch):
    """No name resolution, as on a machine without network."""
    def no_dns(*args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known (test: offline)")

    monkeypatch.setattr(socket, "getaddrinfo", no_dns)


@pytest.fixture(scope="module")
def resnet18_file(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("resnet") / "my_resnet18.pth"
    torch.save(resnet18(weights=None).state_dict(), path)
    return path


@pytest.fixture
def tiny_file(tmp_path) -> Path:
    path = tmp_path / "local" / "my_vgg19.pth"
    path.parent.mkdir()
    torch.save(tiny_net().state_dict(), path)
    return path


# ---------------------------------------------------------------- specs and the real check
def test_specs_name_three_networks_with_their_params_keys_and_url_file_names():
    specs = weight_specs()
    assert set(specs) == NAMES
    assert specs["vgg19"].param_key == "weights.vgg19_path"
    assert specs["inception_fid"].param_key == "weights.inception_path"
    assert specs["resnet18"].param_key == "weights.resnet18_path"
    for spec in specs.values():
        # torch.hub caches a download under the URL's last path component; the resolver must look there.
        assert spec.url.startswith("https://")
        assert spec.hub_filename and spec.url.endswith("/" + spec.hub_filename)
    # The three params keys exist in the repository's params.yaml.
    raw = yaml.safe_load((REPO / "params.yaml").read_text())["weights"]
    for spec in specs.values():
        assert spec.param_key.split(".", 1)[1] in raw


def test_real_resnet18_check_accepts_a_torchvision_state_dict(resnet18_file):
    CHECKS["resnet18"](resnet18_file)  # raises if it does not load strictly


def test_real_resnet18_check_rejects_truncated_and_mismatched_files(resnet18_file, tmp_path):
    truncated = tmp_path / "truncated.pth"
    data = resnet18_file.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(Exception):
        CHECKS["resnet18"](truncated)

    state = torch.load(resnet18_file, weights_only=True)
    del state["layer4.1.conv2.weight"]
    missing_key = tmp_path / "missing_key.pth"
    torch.save(state, missing_key)
    with pytest.raises(RuntimeError, match="layer4.1.conv2.weight"):
        CHECKS["resnet18"](missing_key)

    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(bytes(range(256)) * 64)
    with pytest.raises(Exception):
        CHECKS["resnet18"](garbage)


# ---------------------------------------------------------------- resolve
def test_local_file_named_in_params_wins_over_hub_cache(hub, resnet18_file):
    spec = weight_specs()["resnet18"]
    # A valid file in the hub cache too: the user's file must still win.
    (hub / "checkpoints" / spec.hub_filename).write_bytes(resnet18_file.read_bytes())
    entry = resolve(spec, str(resnet18_file), allow_download=False, timeout_s=1.0)
    assert entry["status"] == "available"
    assert entry["source"] == "params"
    assert Path(entry["origin"]) == resnet18_file
    assert entry["sha256"] == file_sha256(resnet18_file)
    assert entry["file"] == "resnet18.pth"


def test_missing_local_file_is_an_error_naming_the_params_key(hub, tmp_path):
    spec = weight_specs()["vgg19"]
    with pytest.raises(FileNotFoundError, match=r"weights\.vgg19_path") as error:
        resolve(spec, str(tmp_path / "no_such.pth"), allow_download=False, timeout_s=1.0)
    assert "no_such.pth" in str(error.value)


def test_corrupt_local_file_is_an_error_naming_the_params_key(hub, resnet18_file, tmp_path):
    spec = weight_specs()["resnet18"]
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(resnet18_file.read_bytes()[:4096])
    # Even with a good file in the hub cache: a broken user file is not silently replaced.
    (hub / "checkpoints" / spec.hub_filename).write_bytes(resnet18_file.read_bytes())
    with pytest.raises(ValueError, match=r"weights\.resnet18_path") as error:
        resolve(spec, str(corrupt), allow_download=False, timeout_s=1.0)
    assert "corrupt.pth" in str(error.value)


def test_local_file_of_the_wrong_architecture_is_an_error(hub, stand_in_checks, resnet18_file):
    # A ResNet-18 file given as the VGG19 weights does not load into the VGG stand-in.
    with pytest.raises(ValueError, match=r"weights\.vgg19_path"):
        resolve(weight_specs()["vgg19"], str(resnet18_file), allow_download=False, timeout_s=1.0)


def test_hub_cache_file_is_used_when_no_local_file(hub, stand_in_checks, tiny_file):
    spec = weight_specs()["vgg19"]
    cached = hub / "checkpoints" / spec.hub_filename
    cached.write_bytes(tiny_file.read_bytes())
    entry = resolve(spec, "", allow_download=False, timeout_s=1.0)
    assert entry["status"] == "available"
    assert entry["source"] == "hub_cache"
    assert Path(entry["origin"]) == cached
    assert entry["sha256"] == file_sha256(cached)


def test_hub_cache_with_real_resnet18_check(hub, resnet18_file):
    spec = weight_specs()["resnet18"]
    (hub / "checkpoints" / spec.hub_filename).write_bytes(resnet18_file.read_bytes())
    entry = resolve(spec, "", allow_download=False, timeout_s=1.0)
    assert (entry["status"], entry["source"]) == ("available", "hub_cache")


def test_corrupt_hub_cache_file_is_reported_not_used(hub, resnet18_file):
    spec = weight_specs()["resnet18"]
    (hub / "checkpoints" / spec.hub_filename).write_bytes(resnet18_file.read_bytes()[:10_000])
    entry = resolve(spec, "", allow_download=False, timeout_s=1.0)
    assert entry["status"] == "unavailable"
    assert "hub_cache" in entry["reason"] and "failed to load" in entry["reason"]


def test_nothing_available_and_download_disabled(hub, stand_in_checks):
    spec = weight_specs()["inception_fid"]
    entry = resolve(spec, "", allow_download=False, timeout_s=1.0)
    assert entry["status"] == "unavailable"
    assert "source" not in entry and "sha256" not in entry
    assert "download" in entry["reason"] and "disabled" in entry["reason"]
    # The reason says where the cache was looked for.
    assert spec.hub_filename in entry["reason"]
    assert not any((hub / "checkpoints").iterdir())


def test_offline_download_fails_fast_with_the_network_error(hub, offline):
    spec = weight_specs()["vgg19"]
    started = time.perf_counter()
    entry = resolve(spec, "", allow_download=True, timeout_s=2.0)
    elapsed = time.perf_counter() - started
    assert elapsed < 20
    assert entry["status"] == "unavailable"
    assert "download:" in entry["reason"]
    assert "URLError" in entry["reason"] and "test: offline" in entry["reason"]
    assert "disabled" not in entry["reason"]
    assert socket.getdefaulttimeout() is None  # the resolver's global timeout is restored


class StallingServer:
    """HTTP server on localhost that sends headers and a few bytes of a large body, then stalls."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.port = self.sock.getsockname()[1]
        self.release = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        try:
            conn, _ = self.sock.accept()
        except OSError:
            return
        with conn:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 10000000\r\n\r\n" + b"\0" * 1000)
            self.release.wait(60)

    def close(self):
        self.release.set()
        self.sock.close()
        self.thread.join(5)


def test_stalled_download_is_bounded_by_the_timeout_and_leaves_no_partial_file(hub):
    server = StallingServer()
    try:
        spec = WeightSpec("resnet18", "weights.resnet18_path", "stalled-resnet18.pth",
                          f"http://127.0.0.1:{server.port}/stalled-resnet18.pth", "ResNet-18 (test server)")
        started = time.perf_counter()
        entry = resolve(spec, "", allow_download=True, timeout_s=1.0)
        elapsed = time.perf_counter() - started
    finally:
        server.close()
    assert elapsed < 20
    assert entry["status"] == "unavailable"
    assert "download:" in entry["reason"] and "timed out" in entry["reason"].lower()
    # A broken download must not leave anything the next run would take for a cache hit.
    assert list((hub / "checkpoints").iterdir()) == []


# ---------------------------------------------------------------- manifest and copy helpers
def test_copy_into_and_write_manifest_round_trip(tmp_path, tiny_file):
    out = tmp_path / "out"
    out.mkdir()
    copy_into(out, "vgg19", tiny_file)
    assert (out / "vgg19.pth").read_bytes() == tiny_file.read_bytes()
    assert not (out / "vgg19.pth").samefile(tiny_file)
    entries = {"vgg19": {"status": "available", "file": "vgg19.pth", "sha256": file_sha256(tiny_file)},
               "resnet18": {"status": "unavailable", "reason": "test"}}
    write_manifest(out, entries)
    assert read_manifest(out) == entries


# ---------------------------------------------------------------- main
def write_params(workdir: Path, **weights_section) -> Path:
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["weights"].update(weights_section)
    path = workdir / "params.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def test_main_writes_manifest_and_copies_available_files(tmp_path, monkeypatch, hub, stand_in_checks,
                                                          resnet18_file, tiny_file):
    workdir = tmp_path / "work"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    params = write_params(workdir, vgg19_path=str(tiny_file), resnet18_path=str(resnet18_file),
                          inception_path="", allow_download=False)
    stale = workdir / "pipeline" / "weights" / "inception_fid.pth"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"left over from an earlier run")

    assert weights.main(["--params", str(params)]) == 0

    out = workdir / "pipeline" / "weights"
    manifest = json.loads((out / "manifest.json").read_text())
    assert set(manifest) == NAMES
    assert manifest["vgg19"]["status"] == "available" and manifest["vgg19"]["source"] == "params"
    assert manifest["resnet18"]["status"] == "available" and manifest["resnet18"]["source"] == "params"
    assert manifest["inception_fid"]["status"] == "unavailable"
    assert "disabled" in manifest["inception_fid"]["reason"]
    assert (out / "vgg19.pth").read_bytes() == tiny_file.read_bytes()
    assert (out / "resnet18.pth").read_bytes() == resnet18_file.read_bytes()
    assert manifest["resnet18"]["sha256"] == file_sha256(out / "resnet18.pth")
    # The folder is replaced as a whole: no file of an earlier run survives, no staging dir is left.
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "resnet18.pth", "vgg19.pth"]
    assert sorted(p.name for p in (workdir / "pipeline").iterdir()) == ["weights"]
    # The consumers' view of the same folder.
    assert weight_file(out, "resnet18", use="test") == out / "resnet18.pth"


def test_main_output_folder_is_readable_like_other_stage_outputs(tmp_path, monkeypatch, hub):
    # prepare chmods its mkdtemp staging folder to 0755 before renaming it into place; the weights
    # folder must not keep mkdtemp's private 0700 either (DVC outs are read by other users/containers).
    monkeypatch.chdir(tmp_path)
    params = write_params(tmp_path, vgg19_path="", inception_path="", resnet18_path="", allow_download=False)
    assert weights.main(["--params", str(params)]) == 0
    out = tmp_path / "pipeline" / "weights"
    assert out.stat().st_mode & 0o055 == 0o055, oct(out.stat().st_mode)


def test_main_with_nothing_available_lists_all_three_as_unavailable(tmp_path, monkeypatch, hub, offline):
    monkeypatch.chdir(tmp_path)
    params = write_params(tmp_path, vgg19_path="", inception_path="", resnet18_path="",
                          allow_download=True, download_timeout_s=2.0)
    started = time.perf_counter()
    assert weights.main(["--params", str(params)]) == 0
    assert time.perf_counter() - started < 20
    out = tmp_path / "pipeline" / "weights"
    manifest = json.loads((out / "manifest.json").read_text())
    assert set(manifest) == NAMES
    assert all(entry["status"] == "unavailable" and "URLError" in entry["reason"] for entry in manifest.values())
    assert [p.name for p in out.iterdir()] == ["manifest.json"]


def test_main_bad_local_path_exits_1_naming_key_and_keeps_previous_output(tmp_path, monkeypatch, hub, capsys):
    monkeypatch.chdir(tmp_path)
    previous = tmp_path / "pipeline" / "weights" / "manifest.json"
    previous.parent.mkdir(parents=True)
    previous.write_text('{"kept": true}\n')
    params = write_params(tmp_path, resnet18_path=str(tmp_path / "typo.pth"), allow_download=False)

    assert weights.main(["--params", str(params)]) == 1

    err = capsys.readouterr().err
    assert "weights.resnet18_path" in err and "typo.pth" in err
    assert previous.read_text() == '{"kept": true}\n'
    assert sorted(p.name for p in (tmp_path / "pipeline").iterdir()) == ["weights"]


# ---------------------------------------------------------------- src/pretrained.py
def test_weight_file_returns_path_when_available_and_warns_when_not(tmp_path, caplog):
    write_manifest(tmp_path, {
        "resnet18": {"status": "available", "file": "resnet18.pth", "source": "params"},
        "vgg19": {"status": "unavailable", "reason": "hub_cache: no file; download: disabled"},
    })
    with caplog.at_level(logging.WARNING):
        assert weight_file(tmp_path, "resnet18", use="The U-Net encoder") == tmp_path / "resnet18.pth"
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]

    with caplog.at_level(logging.WARNING):
        assert weight_file(tmp_path, "vgg19", use="The perceptual loss") is None
    warnings = "\n".join(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert "vgg19" in warnings and "The perceptual loss" in warnings
    assert "download: disabled" in warnings  # the manifest's reason is passed on


def test_weight_file_for_a_name_missing_from_the_manifest_warns(tmp_path, caplog):
    write_manifest(tmp_path, {})
    with caplog.at_level(logging.WARNING):
        assert weight_file(tmp_path, "inception_fid", use="FID/KID") is None
    warnings = "\n".join(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert "inception_fid" in warnings and "not in the manifest" in warnings


def test_read_manifest_of_missing_folder_says_to_run_the_weights_stage(tmp_path):
    with pytest.raises(FileNotFoundError, match="weights") as error:
        read_manifest(tmp_path / "pipeline" / "weights")
    assert "manifest.json" in str(error.value)
    assert "repro weights" in str(error.value)


@pytest.mark.parametrize("content, message", [
    (b"{\"vgg19\": ", "not valid JSON"),
    (b"[]", "holds [], not a JSON object"),
    (b"{\"vgg19\": \"available\"}", "the entry 'vgg19' holds \"available\", not a JSON object"),
], ids=["cut_short", "a_list", "entry_not_an_object"])
def test_read_manifest_that_is_not_an_object_of_entries_names_the_file(tmp_path, content, message):
    (tmp_path / "manifest.json").write_bytes(content)
    with pytest.raises(ValueError) as error:
        read_manifest(tmp_path)
    assert str(error.value).startswith(f"{tmp_path / 'manifest.json'}: ") and message in str(error.value)
    assert "`dvc repro -f weights`" in str(error.value)


@pytest.mark.parametrize("entry, message", [
    ({"status": "available", "source": "params"}, "the available entry 'resnet18' lacks the key 'file'"),
    ({"status": "unavailable"}, "the unavailable entry 'resnet18' lacks the key 'reason'"),
    ({"file": "resnet18.pth"}, "the entry 'resnet18' has status null"),
    ({"status": "found", "file": "resnet18.pth"}, "the entry 'resnet18' has status \"found\""),
], ids=["available_without_file", "unavailable_without_reason", "no_status", "unknown_status"])
def test_weight_file_of_an_entry_without_what_it_needs_names_the_key(tmp_path, entry, message):
    # Was a KeyError traceback from inside the stage.
    write_manifest(tmp_path, {"resnet18": entry})
    with pytest.raises(ValueError) as error:
        weight_file(tmp_path, "resnet18", use="The U-Net encoder")
    assert str(error.value).startswith(f"{tmp_path / 'manifest.json'}: ") and message in str(error.value)
    assert "`dvc repro -f weights`" in str(error.value)
