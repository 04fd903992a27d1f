"""Image quality, distribution distances, segmentation and uncertainty metrics."""
