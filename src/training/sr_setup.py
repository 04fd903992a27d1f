"""What both SR stages build the same way: data, runtime, generator, monitoring, loop settings, saved meta.

The SR models are trained in two DVC stages, as BasicSR does in two experiments: `train_sr_psnr` (phase 1,
L1 only: the PSNR model) and `train_sr` (phase 2, the GAN, starting from that model). A GAN-phase experiment
(`-S train.sr.lambda_adv=...`) then reuses the cached PSNR model instead of retraining it. Both stages read
their batches from one stream addressed by the global step (phase 2 continues at `psnr_steps`), so the two
stages see the same crops, in the same order, as one run of both phases would.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from src.config import ConfigError, Params, SRTrainConfig, TrainConfig
from src.data.prepared import PREPARED, check_scale, load_meta, open_split
from src.data.subset import train_subset
from src.metrics.image_quality import psnr, ssim
from src.models.srresnet import SRResNet
from src.training.data import BatchStream, SliceCrops, monitoring_slices, paired_crop
from src.training.distributed import Distributed, from_environment
from src.training.loop import LoopSettings
from src.training.provenance import META_KEY, sr_provenance
from src.training.runtime import Runtime, make_runtime, seed_everything
from src.training.sr_steps import SRBatch

SR_DATA = PREPARED / "sr"
PSNR_OUT, GAN_OUT = Path("pipeline/train_sr_psnr"), Path("pipeline/train_sr")
DATA_RANGE = 2.0  # model range [-1, 1]
log = logging.getLogger(__name__)


def uses_data_consistency(requested: bool, degradation: str) -> bool:
    """train.sr.data_consistency applies to k-space degradation only; for bicubic it is skipped, loudly."""
    if requested and degradation != "kspace":
        log.warning("train.sr.data_consistency is ignored: it projects onto measured k-space, and the data's "
                    "degradation is %r (no exact projection); the generator is trained without it", degradation)
        return False
    return requested


def validation_scores(name: str, sr_img: torch.Tensor, hr_img: torch.Tensor, scale: int) -> dict[str, float]:
    sr_img = sr_img.clamp(-1, 1)
    return {f"val/psnr_db/{name}": psnr(sr_img, hr_img, data_range=DATA_RANGE, crop_border=scale).mean().item(),
            f"val/ssim/{name}": ssim(sr_img, hr_img, data_range=DATA_RANGE, crop_border=scale).mean().item()}


@dataclass
class SRSetup:
    """One SR stage's data and hardware, built from params.yaml and the prepared SR split."""
    dist: Distributed
    runtime: Runtime
    meta: dict
    scale: int
    degradation: str
    subset: np.ndarray          # the train slices this run may use (data.train_fraction)
    crops: SliceCrops           # the train crops (paired LR / naive / HR) the stream batches
    stream: BatchStream         # train crops by global step
    val: dict[str, torch.Tensor]  # a few whole val slices for samples and summary scores
    data_consistency: bool

    def batch(self, step: int) -> SRBatch:
        return SRBatch(*(self.runtime.batch(c) for c in self.stream.batch(step)))

    def output_layer(self, cfg: SRTrainConfig, phase: str) -> dict:
        return generator_layer(cfg, self.data_consistency, phase)

    def generator(self, cfg: SRTrainConfig, phase: str) -> SRResNet:
        return SRResNet(self.scale, self.degradation, channels=cfg.g_channels, blocks=cfg.g_blocks,
                        **self.output_layer(cfg, phase))

    def model_meta(self, params: Params, phase: str, steps: int, **extra) -> dict:
        """What evaluate_sr (src/evaluation/models.py) rebuilds the network from, and what it was trained on."""
        cfg = params.train.sr
        return {"scale": self.scale, "degradation": self.degradation, "channels": cfg.g_channels,
                "blocks": cfg.g_blocks, **self.output_layer(cfg, phase), "phase": phase, "steps": steps,
                META_KEY: sr_provenance(params, phase).as_meta(), **extra}


def generator_layer(cfg: SRTrainConfig, data_consistency: bool, phase: str) -> dict:
    """SRResNet's output-layer keywords (projection, clamp in training, band) for `phase` ("psnr" or "gan"), as the
    saved model's meta records them. data_consistency: whether the data allows the projection at all
    (`uses_data_consistency`). The GAN phase keeps the PSNR phase's layer unless train.sr.gan_data_consistency drops
    the projection or train.sr.gan_clamp_output adds the clamp; it starts from the PSNR model's weights either way,
    since the layers differ only in what follows the network's residual."""
    if phase == "psnr":
        projection, clamp = data_consistency, cfg.clamp_output
    else:
        projection, clamp = data_consistency and cfg.gan_data_consistency, cfg.clamp_output or cfg.gan_clamp_output
    return {"data_consistency": projection, "clamp_output": clamp, "data_consistency_band": cfg.data_consistency_band}


def sr_setup(params: Params) -> SRSetup:
    """Seeds, device, the train stream and val slices; each error names the file or params key."""
    cfg, train_cfg = params.train.sr, params.train
    dist = from_environment(train_cfg.device)
    seed_everything(params.seed)  # the same initial weights on every rank
    runtime = make_runtime(train_cfg.device, train_cfg.amp, dist.local_rank)
    meta = load_meta(SR_DATA / "meta.json")
    scale, degradation = int(meta["scale"]), meta["degradation"]
    data = open_split(SR_DATA / "train", ("lr", "naive", "hr"))  # memory maps: batches read their own slices
    check_scale(SR_DATA / "meta.json", SR_DATA / "train", data["lr"].shape, data["hr"].shape, scale)
    subset = train_subset(len(data["hr"]), params.data.train_fraction, params.seed)
    if params.data.train_fraction < 1:
        log.info("data.train_fraction %.3g: training on %d of the train slices", params.data.train_fraction,
                 len(subset))
    data_consistency = uses_data_consistency(cfg.data_consistency, degradation)
    val = monitoring_slices(SR_DATA / "val", ("lr", "hr", "naive"))
    if cfg.crop_size > data["hr"].shape[-1]:
        raise ConfigError(f"train.sr.crop_size: {cfg.crop_size} is larger than the prepared images "
                          f"({data['hr'].shape[-1]} px)")
    crops = SliceCrops(data, paired_crop(scale, cfg.crop_size), params.seed, subset, str(SR_DATA / "train"))
    stream = BatchStream(crops, cfg.batch_size, dist, params.seed, train_cfg.num_workers, "train.sr.batch_size")
    return SRSetup(dist, runtime, meta, scale, degradation, subset, crops, stream, val, data_consistency)


def loop_settings(cfg: SRTrainConfig, train_cfg: TrainConfig, total_steps: int, desc: str) -> LoopSettings:
    return LoopSettings(total_steps=total_steps, log_every=cfg.log_every, sample_every=cfg.sample_every,
                        checkpoint_every=cfg.checkpoint_every, max_nan_retries=train_cfg.max_nan_retries, desc=desc)
