"""Issue 21, item 2: train a row's seeds as one batched computation, or one model at a time?

The downstream rows train `evaluate.downstream_seeds` U-Nets each (same recipe, other seeds). This benchmark
times one full training step (forward, cross-entropy + soft Dice, backward, fused AdamW) of K such U-Nets
done two ways in one process:

- `sequential`: K ordinary steps, one model after the other, channels_last (what `fit_segmenter` does);
- `vmapped`: one step of the K models stacked with `torch.func.stack_module_state` and run through
  `vmap(functional_call)`; vmap turns every convolution into a grouped convolution over the K models, and one
  fused AdamW steps the stacked parameters (AdamW is elementwise, so that is K AdamWs). It runs NCHW: the
  stacked 5-D weights and batches have no channels_last layout.

It also checks whether the two give the same models: from the same start and the same batches, the largest
weight difference after `--equality-steps` steps (fp32).

    python -m benchmarks.batched_seeds [--models 3 12] [--steps 10]

Writes benchmarks/batched_seeds.json and prints the table. Time it on a quiet machine (load < 0.5).
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import json
import os
from pathlib import Path

import segmentation_models_pytorch as smp
import torch
import torch.nn.functional as F
from torch.func import functional_call, stack_module_state, vmap

from benchmarks.pipeline_times import machine
from benchmarks.speed import interleaved_seconds
from src.config import load_params
from src.models.segmenter import build_unet
from src.training.runtime import CPU_BF16_FLAGS, adam_options, cpu_flags

RESULTS = Path(__file__).resolve().parent / "batched_seeds.json"
N_CLASSES = 4  # the demo's background, CSF, GM, WM


def unets(params, count: int) -> list[torch.nn.Module]:
    recipe = params.segmenter
    models = []
    for seed in range(count):
        torch.manual_seed(seed)
        model, _ = build_unet(recipe.encoder, recipe.encoder_depth, recipe.decoder_channels, N_CLASSES, None)
        models.append(model.train())
    return models


def batches(params, count: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """One batch per model: images (K, B, 1, crop, crop), labels (K, B, crop, crop)."""
    g = torch.Generator().manual_seed(seed)
    size, batch = params.segmenter.crop_size, params.segmenter.batch_size
    return (torch.rand(count, batch, 1, size, size, generator=g) * 2 - 1,
            torch.randint(0, N_CLASSES, (count, batch, size, size), generator=g))


def segmentation_loss(logits: torch.Tensor, labels: torch.Tensor, dice) -> torch.Tensor:
    return F.cross_entropy(logits, labels) + dice(logits, labels)


class Sequential:
    """K ordinary training steps, one model at a time (fit_segmenter's step)."""

    def __init__(self, models, params, amp: bool):
        self.models = [m.to(memory_format=torch.channels_last) for m in models]
        self.optimizers = [torch.optim.AdamW(m.parameters(), lr=params.segmenter.lr,
                                             weight_decay=params.segmenter.weight_decay, **adam_options())
                           for m in self.models]
        self.amp, self.dice = amp, smp.losses.DiceLoss(mode="multiclass")

    def step(self, images, labels) -> None:
        for k, (model, optimizer) in enumerate(zip(self.models, self.optimizers)):
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.amp):
                logits = model(images[k].contiguous(memory_format=torch.channels_last)).float()
                loss = segmentation_loss(logits, labels[k], self.dice)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

    def weights(self) -> list[dict[str, torch.Tensor]]:
        return [m.state_dict() for m in self.models]


class Vmapped:
    """One step of the K models stacked: vmap over functional_call, one AdamW over the stacked parameters."""

    def __init__(self, models, params, amp: bool):
        stacked, self.buffers = stack_module_state(models)
        self.params = {name: p.detach().requires_grad_() for name, p in stacked.items()}
        self.template = copy.deepcopy(models[0]).to("meta")
        self.optimizer = torch.optim.AdamW(self.params.values(), lr=params.segmenter.lr,
                                           weight_decay=params.segmenter.weight_decay, **adam_options())
        self.amp, self.dice = amp, smp.losses.DiceLoss(mode="multiclass")

    def _loss(self, params, buffers, images, labels):
        logits = functional_call(self.template, (params, buffers), (images,)).float()
        return segmentation_loss(logits, labels, self.dice)

    def step(self, images, labels) -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.amp):
            losses = vmap(self._loss)(self.params, self.buffers, images, labels)
        self.optimizer.zero_grad(set_to_none=True)
        # The models are independent, so the gradient of the sum is each model's own gradient.
        losses.sum().backward()
        self.optimizer.step()

    def weights(self) -> list[dict[str, torch.Tensor]]:
        count = next(iter(self.params.values())).shape[0]
        return [{name: t[k].detach() for name, t in {**self.params, **self.buffers}.items()} for k in range(count)]


def largest_difference(params, count: int, steps: int) -> float:
    """Max |w_sequential - w_vmapped| over every weight and buffer after `steps` fp32 steps from one start."""
    sequential = Sequential(unets(params, count), params, amp=False)
    vmapped = Vmapped(unets(params, count), params, amp=False)
    for step in range(steps):
        images, labels = batches(params, count, seed=step)
        sequential.step(images, labels)
        vmapped.step(images, labels)
    worst = 0.0
    for a, b in zip(sequential.weights(), vmapped.weights()):
        for name, value in a.items():
            if value.is_floating_point():
                worst = max(worst, float((value - b[name]).abs().max()))
    return worst


def measure(params, count: int, amp: bool, steps: int) -> dict:
    images, labels = batches(params, count)
    sides = {"sequential": Sequential(unets(params, count), params, amp),
             "vmapped": Vmapped(unets(params, count), params, amp)}
    seconds = interleaved_seconds({name: (lambda s=side: s.step(images, labels)) for name, side in sides.items()},
                                  steps)
    return {"models": count, "precision": "bf16" if amp else "fp32",
            "sequential_s_per_step_of_all": round(seconds["sequential"], 4),
            "vmapped_s_per_step_of_all": round(seconds["vmapped"], 4),
            "vmapped_speedup": round(seconds["sequential"] / seconds["vmapped"], 2)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=int, nargs="+", default=[3, 12],
                        help="K: models per batched step (3 = one row's seeds, 12 = all of baselines' U-Nets)")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per side (median)")
    parser.add_argument("--equality-steps", type=int, default=5)
    args = parser.parse_args(argv)
    load_at_start = round(os.getloadavg()[0], 2)
    params = load_params("params.yaml")
    torch.set_flush_denormal(True)
    precisions = [False, True] if CPU_BF16_FLAGS & cpu_flags() else [False]  # bf16 only where native
    rows = [measure(params, count, amp, args.steps) for count in args.models for amp in precisions]
    result = {"date": dt.date.today().isoformat(), "load_avg_1min_at_start": load_at_start,
              "machine": machine(), "recipe": f"{params.segmenter.encoder} U-Net, batch {params.segmenter.batch_size}"
              f" at {params.segmenter.crop_size} px", "rows": rows,
              "largest_weight_difference_fp32": {"models": args.models[0], "steps": args.equality_steps,
                                                 "value": largest_difference(params, args.models[0],
                                                                             args.equality_steps)}}
    RESULTS.write_text(json.dumps(result, indent=1) + "\n")
    print(f"| models | precision | sequential s/step | vmapped s/step | vmapped speed-up |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['models']} | {r['precision']} | {r['sequential_s_per_step_of_all']} | "
              f"{r['vmapped_s_per_step_of_all']} | {r['vmapped_speedup']}x |")
    diff = result["largest_weight_difference_fp32"]
    print(f"largest weight difference after {diff['steps']} fp32 steps ({diff['models']} models): {diff['value']:.3g}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
