"""The training loop: exact resume, fresh start on changed params, NaN roll-back."""

import copy
import math

import pytest
import torch

from src.models.discriminators import PatchDiscriminator
from src.models.srresnet import SRResNet
from src.training.batches import paired_crops
from src.training.checkpoint import TrainState
from src.training.loop import GeneratorState, LoopSettings, NonFiniteLossError, fit, try_resume
from src.training.runtime import make_runtime
from src.training.sr_steps import SRBatch, SRCritics, SRGanSettings, SRNets, SROptimizers, gan_step
from tests.training.helpers import FakeLive

RUNTIME = make_runtime("cpu", amp=False)
LR_IMG = torch.rand(6, 1, 8, 8) * 2 - 1
HR_IMG = torch.rand(6, 1, 32, 32) * 2 - 1
NAIVE_IMG = torch.rand(6, 1, 32, 32) * 2 - 1


def build_run(seed=0):
    """A tiny SRGAN run whose every random draw is part of its checkpointed state."""
    torch.manual_seed(seed)
    g = SRResNet(4, "kspace", channels=8, blocks=1)
    d = PatchDiscriminator(1, 8, 2, spectral_norm=True)
    g_ema = copy.deepcopy(g).requires_grad_(False)
    opt_g, opt_d = torch.optim.Adam(g.parameters(), 1e-3), torch.optim.Adam(d.parameters(), 1e-3)
    sched = torch.optim.lr_scheduler.StepLR(opt_g, step_size=3, gamma=0.5)
    batches = torch.Generator().manual_seed(seed)
    state = TrainState({"g": g, "d": d, "g_ema": g_ema}, {"g": opt_g, "d": opt_d}, {"g": sched},
                       {"batches": GeneratorState(batches)})
    settings = SRGanSettings(gan_loss="nonsaturating", policy="color,translation,cutout", lambda_pixel=1.0,
                             lambda_percep=0.0, lambda_adv=0.1, r1_gamma=0.0, label_smoothing=0.0)
    nets, optimizers, critics = SRNets(g, g_ema, d), SROptimizers(opt_g, opt_d), SRCritics(None, settings)

    def step_fn(step):
        batch = SRBatch(*paired_crops(LR_IMG, NAIVE_IMG, HR_IMG, 4, 16, 2, batches))
        stats = gan_step(nets, optimizers, critics, batch, settings, RUNTIME, instance_noise=0.01, ema_decay=0.9)
        sched.step()
        return stats

    return state, step_fn


def loop_settings(total):
    return LoopSettings(total_steps=total, log_every=2, sample_every=100, checkpoint_every=4,
                        max_nan_retries=2, desc="test")


def test_resume_equals_uninterrupted_run(tmp_path):
    straight, step_fn = build_run()
    fit(straight, step_fn, loop_settings(8), tmp_path / "a.pt", "fp", FakeLive())

    first, step_fn = build_run()
    fit(first, step_fn, loop_settings(4), tmp_path / "b.pt", "fp", FakeLive())
    del first  # the process dies here; only the checkpoint survives
    torch.manual_seed(12345)  # a new process has other RNG state: resume must restore it
    resumed, step_fn = build_run()
    assert try_resume(resumed, tmp_path / "b.pt", "fp", resume=True)
    assert resumed.step == 4
    fit(resumed, step_fn, loop_settings(8), tmp_path / "b.pt", "fp", FakeLive())

    for name in ("g", "d", "g_ema"):
        for (key, a), b in zip(straight.modules[name].state_dict().items(), resumed.modules[name].state_dict().values()):
            assert torch.equal(a, b), f"{name}.{key} differs after resume"
    assert straight.optimizers["g"].param_groups[0]["lr"] == resumed.optimizers["g"].param_groups[0]["lr"]


def test_changed_fingerprint_or_resume_false_starts_fresh(tmp_path):
    state, step_fn = build_run()
    fit(state, step_fn, loop_settings(4), tmp_path / "c.pt", "fp-old", FakeLive())
    fresh, _ = build_run()
    assert not try_resume(fresh, tmp_path / "c.pt", "fp-new", resume=True)
    assert not try_resume(fresh, tmp_path / "c.pt", "fp-old", resume=False)
    assert fresh.step == 0


def test_corrupt_checkpoint_is_a_clear_error(tmp_path):
    bad = tmp_path / "last.pt"
    bad.write_bytes(b"not a checkpoint")
    state, _ = build_run()
    with pytest.raises(ValueError, match="last.pt: corrupt"):
        try_resume(state, bad, "fp", resume=True)


def test_nan_guard_rolls_back_and_halves_lr(tmp_path):
    state, real_step = build_run()
    injected = {"done": False}

    def step_fn(step):
        stats = real_step(step)
        if step == 6 and not injected["done"]:
            injected["done"] = True
            return {**stats, "g/adv": math.nan}
        return stats

    lr_before = state.optimizers["d"].param_groups[0]["lr"]
    live = FakeLive()
    fit(state, step_fn, loop_settings(8), tmp_path / "n.pt", "fp", live)
    assert state.step == 8
    assert state.optimizers["d"].param_groups[0]["lr"] == pytest.approx(lr_before / 2)
    assert ("train/nan_rollbacks") in {name for _, name, _ in live.metrics}
    assert all(math.isfinite(p.detach().abs().sum().item()) for p in state.modules["g"].parameters())


def test_nan_guard_gives_up_after_max_retries(tmp_path):
    state, real_step = build_run()

    def always_nan(step):
        return {"g/adv": math.nan}

    with pytest.raises(NonFiniteLossError, match="non-finite g/adv"):
        fit(state, always_nan, loop_settings(8), tmp_path / "x.pt", "fp", FakeLive())


def build_cyclegan_run(seed=0):
    """A tiny CycleGAN run: image pools and both optimisers are part of the checkpointed state."""
    from src.models.cyclegan import ResnetGenerator
    from src.training.batches import random_crops
    from src.training.cyclegan_step import (CycleGANBatch, CycleGANCritics, CycleGANNets, CycleGANOptimizers,
                                            CycleGANSettings, cyclegan_step)
    from src.training.gan_utils import ImagePool

    torch.manual_seed(seed)
    nets = CycleGANNets(ResnetGenerator(1, 4, 1, residual=True), ResnetGenerator(1, 4, 1, residual=True),
                        PatchDiscriminator(1, 4, 2, spectral_norm=True), PatchDiscriminator(1, 4, 2, spectral_norm=True))
    opt_g = torch.optim.Adam([*nets.g_sim2real.parameters(), *nets.g_real2sim.parameters()], 1e-3)
    opt_d = torch.optim.Adam([*nets.d_real.parameters(), *nets.d_sim.parameters()], 1e-3)
    batches = torch.Generator().manual_seed(seed)
    pools = ImagePool(3, torch.Generator().manual_seed(1)), ImagePool(3, torch.Generator().manual_seed(2))
    state = TrainState(dict(vars(nets)), {"g": opt_g, "d": opt_d}, {},
                       {"batches": GeneratorState(batches), "pool_real": pools[0], "pool_sim": pools[1]})
    settings = CycleGANSettings(lambda_adv=1.0, lambda_cycle=10.0, lambda_identity=5.0, lambda_percep=0.0,
                                lambda_semantic=0.0, gan_loss="lsgan", policy="color,translation,cutout")
    critics = CycleGANCritics(*pools, None, None, settings)

    def step_fn(step):
        sim, _ = random_crops(HR_IMG, 16, 2, batches)
        real, _ = random_crops(NAIVE_IMG, 16, 2, batches)
        batch = CycleGANBatch(sim, torch.zeros(2, 16, 16, dtype=torch.long), real)
        return cyclegan_step(nets, CycleGANOptimizers(opt_g, opt_d), critics, batch, settings, RUNTIME)

    return state, step_fn


def test_cyclegan_resume_equals_uninterrupted_run(tmp_path):
    straight, step_fn = build_cyclegan_run()
    fit(straight, step_fn, loop_settings(8), tmp_path / "a.pt", "fp", FakeLive())
    first, step_fn = build_cyclegan_run()
    fit(first, step_fn, loop_settings(4), tmp_path / "b.pt", "fp", FakeLive())
    del first
    torch.manual_seed(999)
    resumed, step_fn = build_cyclegan_run()
    assert try_resume(resumed, tmp_path / "b.pt", "fp", resume=True) and resumed.step == 4
    fit(resumed, step_fn, loop_settings(8), tmp_path / "b.pt", "fp", FakeLive())
    for name in ("g_sim2real", "g_real2sim", "d_real", "d_sim"):
        for (key, a), b in zip(straight.modules[name].state_dict().items(), resumed.modules[name].state_dict().values()):
            assert torch.equal(a, b), f"{name}.{key} differs after resume"


def test_loop_logs_its_own_speed_and_the_scale_benchmark_reads_it(tmp_path, caplog):
    """fit logs how many steps it ran and how long the loop alone took (the scale benchmark compares that across
    cohort sizes, apart from the stage's start-up); a resumed run counts only the steps it ran itself."""
    from benchmarks.scale import loop_time

    state, step_fn = build_run()
    with caplog.at_level("INFO", logger="src.training.loop"):
        fit(state, step_fn, loop_settings(4), tmp_path / "a.pt", "fp", FakeLive())
        state, step_fn = build_run()
        assert try_resume(state, tmp_path / "a.pt", "fp", resume=True)
        fit(state, step_fn, loop_settings(6), tmp_path / "a.pt", "fp", FakeLive())
    log = tmp_path / "stage.log"
    lines = [r.getMessage() for r in caplog.records if "of training loop" in r.getMessage()]
    assert len(lines) == 2
    log.write_text(lines[0] + "\n")
    steps, seconds = loop_time(log)
    assert steps == 4 and seconds > 0
    log.write_text("\n".join(lines) + "\n")
    assert loop_time(log)[0] == 2  # the last line: the resumed run's own 2 steps
    log.write_text("a stage that never trained\n")
    with pytest.raises(RuntimeError, match="stage.log"):
        loop_time(log)
