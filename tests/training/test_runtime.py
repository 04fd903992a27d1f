"""The precision policy: bf16 autocast is a pure function of the param, the device and the CPU flags."""

import pytest
import torch

from src.training.runtime import Runtime, cpu_flags, use_bf16

AVX512_ONLY = frozenset({"sse4_2", "avx2", "avx512f", "avx512bw"})


@pytest.mark.parametrize("flags,expected", [
    (frozenset({"avx512f", "avx512_bf16"}), True),
    (frozenset({"avx512f", "amx_bf16", "amx_tile"}), True),
    (AVX512_ONLY, False),      # bf16 would be emulated: slower than fp32
    (frozenset(), False),      # unknown CPU (no /proc/cpuinfo)
])
def test_auto_on_cpu_follows_native_bf16_flags(flags, expected):
    assert use_bf16("auto", "cpu", flags) is expected


def test_explicit_choice_overrides_the_hardware():
    assert use_bf16(True, "cpu", AVX512_ONLY) is True
    assert use_bf16(False, "cpu", frozenset({"avx512_bf16"})) is False
    assert use_bf16(False, "cuda", frozenset(), cuda_bf16=True) is False


def test_auto_on_cuda_follows_the_gpu_not_the_cpu():
    assert use_bf16("auto", "cuda", frozenset({"avx512_bf16"}), cuda_bf16=False) is False
    assert use_bf16("auto", "cuda", frozenset(), cuda_bf16=True) is True


def test_cpu_flags_reads_the_first_flags_line(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu avx512f avx512_bf16\n\nprocessor\t: 1\nflags\t\t: fpu\n")
    assert cpu_flags(info) == frozenset({"fpu", "avx512f", "avx512_bf16"})
    assert cpu_flags(tmp_path / "missing") == frozenset()


def test_autocast_casts_convs_only_when_amp_is_on_and_enabled():
    conv = torch.nn.Conv2d(1, 2, 3)
    x = torch.rand(1, 1, 8, 8)
    on = Runtime(torch.device("cpu"), amp=True, channels_last=False)
    off = Runtime(torch.device("cpu"), amp=False, channels_last=False)
    with on.autocast():
        assert conv(x).dtype == torch.bfloat16
    with on.autocast(enabled=False):
        assert conv(x).dtype == torch.float32
    with off.autocast():
        assert conv(x).dtype == torch.float32


def test_cpu_runtime_flushes_denormals():
    """Denormals stalled CPU steps 10-50x (Adam moments of float-noise gradients decay into them)."""
    from src.training.runtime import make_runtime

    torch.set_flush_denormal(False)
    assert torch.tensor([1e-40]).mul(1.0).item() != 0.0
    make_runtime("cpu", False)
    assert torch.tensor([1e-40]).mul(1.0).item() == 0.0
