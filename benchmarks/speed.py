"""Speed of the training steps: a roofline against the measured matmul peak, and a head-to-head with the
textbook steps (benchmarks/textbook.py) at the reference CycleGAN config and at our defaults.

Every figure is measured in one process, on this machine, in the same run: FLOPs per step
(torch.utils.flop_counter, forward + backward), median seconds per step, achieved GFLOP/s,
and that as a fraction of a 2048x2048 matmul's GFLOP/s in the step's own dtype (bf16 when
the runtime autocasts, else fp32). The head-to-head runs the two steps interleaved, so a
noisy neighbour slows both alike.
"""

from __future__ import annotations

import copy
import statistics
import time
from functools import partial
from types import SimpleNamespace
from typing import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.textbook import textbook_cyclegan_step
from src.config import Params, as_dict
from src.data.degrade import degrade, naive_upsample
from src.losses.perceptual import VGGPerceptualLoss, build_vgg19_features
from src.models.cyclegan import ResnetGenerator
from src.models.discriminators import PatchDiscriminator
from src.models.segmenter import build_unet
from src.models.srresnet import SRResNet
from src.training.cyclegan_step import (CycleGANBatch, CycleGANCritics, CycleGANNets, CycleGANOptimizers,
                                        CycleGANSettings, cyclegan_step)
from src.training.gan_utils import ImagePool
from src.training.runtime import Runtime
from src.training.sr_steps import SRBatch, SRCritics, SRGanSettings, SRNets, SROptimizers, gan_step, psnr_step

# junyanz's defaults at our slice size: 9 blocks, 64 channels, 70-px PatchGAN, batch 1, LSGAN,
# cycle 10, identity 5 (= 0.5 x 10), no perceptual/semantic terms, no DiffAugment.
REFERENCE_CYCLEGAN = dict(g_channels=64, g_blocks=9, d_channels=64, d_layers=3, batch_size=1, crop_size=64,
                          spectral_norm=False, residual=False)


def median_seconds(fn: Callable[[], object], steps: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def interleaved_seconds(fns: dict[str, Callable[[], object]], steps: int, warmup: int = 2) -> dict[str, float]:
    """Median s/step of each fn, run in turn within each round (a noisy neighbour slows all alike)."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for round_index in range(warmup + steps):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            if round_index >= warmup:
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def flops_per_call(fn: Callable[[], object]) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def matmul_peak_gflops(dtype: torch.dtype, device: torch.device, n: int = 2048, steps: int = 5) -> float:
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    return 2 * n**3 / median_seconds(lambda: a @ b, steps) / 1e9


def roofline_row(name: str, fn: Callable[[], object], steps: int, runtime: Runtime, peaks: dict[str, float]) -> dict:
    flops = flops_per_call(fn)
    seconds = median_seconds(fn, steps)
    dtype = "bf16" if runtime.amp else "fp32"
    gflops = flops / seconds / 1e9
    return {"step": name, "dtype": dtype, "gflop_per_step": round(flops / 1e9, 3), "s_per_step": round(seconds, 4),
            "gflop_s": round(gflops, 1), "fraction_of_peak": round(gflops / peaks[dtype], 3)}


def cyclegan_parts(params: Params, runtime: Runtime, cfg, percep: bool, semantic: bool, policy: str):
    """Fresh networks, optimisers, critics, a random batch and settings for one CycleGAN config."""
    t = params.train
    torch.manual_seed(0)
    settings = CycleGANSettings(lambda_adv=t.lambda_adv, lambda_cycle=t.lambda_cycle, lambda_identity=t.lambda_identity,
                                lambda_percep=t.lambda_percep if percep else 0.0,
                                lambda_semantic=t.lambda_semantic if semantic else 0.0,
                                gan_loss=cfg.gan_loss, policy=policy)
    nets = CycleGANNets(
        *(runtime.place(ResnetGenerator(1, cfg.g_channels, cfg.g_blocks, cfg.residual)) for _ in range(2)),
        *(runtime.place(PatchDiscriminator(1, cfg.d_channels, cfg.d_layers, spectral_norm=cfg.spectral_norm,
                                            downsample=cfg.d_downsample))
          for _ in range(2)))
    optimizers = CycleGANOptimizers(
        torch.optim.Adam([*nets.g_sim2real.parameters(), *nets.g_real2sim.parameters()], cfg.lr, betas=cfg.betas),
        torch.optim.Adam([*nets.d_real.parameters(), *nets.d_sim.parameters()], cfg.lr, betas=cfg.betas))
    segmenter = None
    if semantic:
        seg = params.segmenter
        segmenter, _ = build_unet(seg.encoder, seg.encoder_depth, seg.decoder_channels, 4, None)
        segmenter = runtime.place(segmenter.eval().requires_grad_(False))
    perceptual = runtime.place(VGGPerceptualLoss(build_vgg19_features(None)[0], list(cfg.vgg_layers))) if percep else None
    critics = CycleGANCritics(ImagePool(cfg.pool_size, torch.Generator().manual_seed(1)),
                              ImagePool(cfg.pool_size, torch.Generator().manual_seed(2)), perceptual, segmenter, settings)
    shape = (cfg.batch_size, 1, cfg.crop_size, cfg.crop_size)
    batch = CycleGANBatch(runtime.batch(torch.rand(shape) * 2 - 1),
                          torch.randint(0, 4, (cfg.batch_size, cfg.crop_size, cfg.crop_size), device=runtime.device),
                          runtime.batch(torch.rand(shape) * 2 - 1))
    return nets, optimizers, critics, batch, settings


def head_to_head(params: Params, runtime: Runtime, cfg, steps: int, full_terms: bool) -> dict:
    """Ours (fused, runtime precision) against the textbook step (six G calls, fp32, contiguous), interleaved."""
    policy = cfg.diffaugment if full_terms else ""
    ours = cyclegan_parts(params, runtime, cfg, full_terms, full_terms, policy)
    fp32 = Runtime(runtime.device, amp=False, channels_last=False)
    textbook = cyclegan_parts(params, fp32, cfg, full_terms, full_terms, policy)
    fns = {"ours": lambda: cyclegan_step(*ours, runtime), "textbook": lambda: textbook_cyclegan_step(*textbook)}
    seconds = interleaved_seconds(fns, steps)
    flops = flops_per_call(fns["textbook"])
    return {"ours_s_per_step": round(seconds["ours"], 4), "textbook_s_per_step": round(seconds["textbook"], 4),
            "speedup": round(seconds["textbook"] / seconds["ours"], 2),
            "textbook_gflop_per_step": round(flops / 1e9, 3), "ours_gflop_per_step": round(flops_per_call(fns["ours"]) / 1e9, 3),
            "ours_dtype": "bf16" if runtime.amp else "fp32"}


def speed(params: Params, runtime: Runtime, steps: int) -> dict:
    peaks = {"fp32": matmul_peak_gflops(torch.float32, runtime.device)}
    peaks["bf16"] = matmul_peak_gflops(torch.bfloat16, runtime.device)
    sr, cg, seg = params.train.sr, params.train.cyclegan, params.segmenter
    scale = params.data.scale
    torch.manual_seed(0)
    g = runtime.place(SRResNet(scale, params.data.degradation, sr.g_channels, sr.g_blocks))
    nets = SRNets(g, copy.deepcopy(g).requires_grad_(False),
                  runtime.place(PatchDiscriminator(1, sr.d_channels, sr.d_layers, spectral_norm=sr.spectral_norm)))
    optimizers = SROptimizers(torch.optim.Adam(g.parameters(), 1e-4), torch.optim.Adam(nets.d.parameters(), 1e-4))
    settings = SRGanSettings(gan_loss=sr.gan_loss, policy=sr.diffaugment, lambda_pixel=sr.lambda_pixel,
                             lambda_percep=sr.lambda_percep, lambda_adv=sr.lambda_adv, r1_gamma=sr.r1_gamma,
                             label_smoothing=sr.label_smoothing, lambda_consistency=sr.lambda_consistency)
    critics = SRCritics(runtime.place(VGGPerceptualLoss(build_vgg19_features(None)[0], list(sr.vgg_layers))), settings,
                        degrade=partial(degrade, scale=scale, degradation=params.data.degradation))
    lr_img = runtime.batch(torch.rand(sr.batch_size, 1, sr.crop_size // scale, sr.crop_size // scale) * 2 - 1)
    batch = SRBatch(lr_img, naive_upsample(lr_img, scale, params.data.degradation),
                    runtime.batch(torch.rand(sr.batch_size, 1, sr.crop_size, sr.crop_size) * 2 - 1))
    rows = [
        roofline_row("sr_psnr_step", lambda: psnr_step(nets, optimizers.g, batch, runtime, ema_decay=0.99), steps,
                     runtime, peaks),
        roofline_row("sr_gan_step", lambda: gan_step(nets, optimizers, critics, batch, settings, runtime,
                                                     instance_noise=0.0, ema_decay=0.99), steps, runtime, peaks),
    ]
    default_cg = cyclegan_parts(params, runtime, cg, True, True, cg.diffaugment)
    rows.append(roofline_row("cyclegan_step", lambda: cyclegan_step(*default_cg, runtime), steps, runtime, peaks))
    reference_cfg = SimpleNamespace(**{**as_dict(cg), **REFERENCE_CYCLEGAN})
    reference = cyclegan_parts(params, runtime, reference_cfg, False, False, "")
    rows.append(roofline_row("cyclegan_step_reference_config", lambda: cyclegan_step(*reference, runtime), steps,
                             runtime, peaks))

    unet, _ = build_unet(seg.encoder, seg.encoder_depth, seg.decoder_channels, 4, None)
    unet = runtime.place(unet)
    opt = torch.optim.AdamW(unet.parameters(), 1e-3)
    x = runtime.batch(torch.rand(seg.batch_size, 1, seg.crop_size, seg.crop_size) * 2 - 1)
    y = torch.randint(0, 4, (seg.batch_size, seg.crop_size, seg.crop_size), device=runtime.device)

    def seg_step():
        with runtime.autocast():
            logits = unet(x)
        loss = torch.nn.functional.cross_entropy(logits.float(), y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    rows.append(roofline_row("segmenter_step", seg_step, steps, runtime, peaks))
    return {
        "device": str(runtime.device), "bf16": runtime.amp,
        "matmul_peak_gflop_s": {k: round(v, 1) for k, v in peaks.items()},
        "roofline": rows,
        "head_to_head": {
            "reference_config": head_to_head(params, runtime, reference_cfg, steps, full_terms=False),
            "default_config": head_to_head(params, runtime, cg, steps, full_terms=True),
        },
    }
