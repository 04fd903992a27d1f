"""Building blocks of the `evaluate` stage: the metrics.json schema and one module per metric group."""
