"""Adversarial, perceptual and semantic-consistency losses."""
