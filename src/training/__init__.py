"""Training loop, checkpoints and per-family GAN step functions."""
