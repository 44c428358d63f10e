"""Local `evaluate` metric modules (load with `evaluate.load("train/metrics/<name>")`)."""
