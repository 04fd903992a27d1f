"""benchmarks/batched_seeds.py times K U-Net steps one at a time against one vmapped step of the K stacked
models. The comparison only means something if both sides compute the same thing: the same losses and
gradients from the same weights and batches, up to summation order."""

import torch

from benchmarks.batched_seeds import Sequential, Vmapped, batches, unets
from src.config import load_params


def test_both_sides_take_the_same_step_up_to_rounding():
    params = load_params("params.yaml")
    sequential = Sequential(unets(params, 2), params, amp=False)
    vmapped = Vmapped(unets(params, 2), params, amp=False)
    before = [{name: value.clone() for name, value in weights.items()} for weights in vmapped.weights()]
    images, labels = batches(params, 2)
    sequential.step(images, labels)
    vmapped.step(images, labels)
    for k, model in enumerate(sequential.models):
        assert not torch.equal(before[k]["encoder.conv1.weight"], before[1 - k]["encoder.conv1.weight"])  # other seeds
        for name, parameter in model.named_parameters():
            if parameter.grad is None:  # layer4: the U-Net's encoder_depth 4 leaves it out of the graph
                assert vmapped.params[name].grad is None, name
                continue
            # Relative to the tensor's norm. Rounding alone moves some of these random-data gradients by
            # about 1 %: measured, channels_last against NCHW of one model differ by up to 1.1 % (vmapped 0.9 %).
            # A wrong pairing of models, batches or BatchNorm statistics moves them by order 1.
            difference = torch.linalg.vector_norm(parameter.grad - vmapped.params[name].grad[k])
            assert difference / torch.linalg.vector_norm(parameter.grad) < 5e-2, name
        # BatchNorm's running statistics follow each model's own batch on both sides.
        for name, buffer in model.named_buffers():
            if buffer.is_floating_point():
                torch.testing.assert_close(buffer, vmapped.buffers[name][k], rtol=1e-4, atol=1e-5, msg=name)
