"""GAN image translation for MRI: super-resolution and sim-to-real, as a DVC pipeline."""
