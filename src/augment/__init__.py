"""Differentiable augmentation for discriminators (DiffAugment)."""
