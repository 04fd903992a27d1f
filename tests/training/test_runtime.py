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


def test_cuda_without_a_device_names_the_key_it_was_read_from(monkeypatch):
    from src.config import ConfigError
    from src.training.runtime import make_runtime

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match=r"^evaluate\.device: 'cuda' requested"):
        make_runtime("cuda", False, key="evaluate.device")
    with pytest.raises(ConfigError, match=r"^train\.device: 'cuda' requested"):
        make_runtime("cuda", False)


def test_a_subset_smaller_than_one_batch_names_train_fraction_too():
    import numpy as np

    from src.config import ConfigError
    from src.training.data import BatchStream, SliceCrops, image_crop
    from src.training.distributed import SINGLE

    arrays = {"real": np.zeros((10, 1, 16, 16), np.float32)}
    subset = SliceCrops(arrays, image_crop(16, "real"), 0, index=np.arange(3))
    with pytest.raises(ConfigError, match=r"^train\.cyclegan\.batch_size: .* larger than the 3 training slices "
                                          r"\(data\.train_fraction keeps 3 of 10\)"):
        BatchStream(subset, 4, SINGLE, 0, 0, "train.cyclegan.batch_size")
    whole = SliceCrops({"real": arrays["real"][:3]}, image_crop(16, "real"), 0)
    with pytest.raises(ConfigError, match=r"larger than the 3 training slices$"):
        BatchStream(whole, 4, SINGLE, 0, 0, "train.cyclegan.batch_size")


def test_channels_last_is_placed_on_nets_and_image_batches():
    runtime = Runtime(torch.device("cpu"), amp=False, channels_last=True)
    net = runtime.place(torch.nn.Conv2d(3, 8, 3))
    assert net.weight.is_contiguous(memory_format=torch.channels_last)
    assert runtime.batch(torch.rand(2, 3, 8, 8)).is_contiguous(memory_format=torch.channels_last)
    assert runtime.batch(torch.rand(2, 8)).shape == (2, 8)   # not an image: left as it is
