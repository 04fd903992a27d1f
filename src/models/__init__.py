"""Networks: SR generator, patch discriminators, CycleGAN generator, U-Net segmenter."""
