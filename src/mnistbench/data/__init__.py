"""The data stages: fetch canonical MNIST (sources, idx, wheel) and split + normalize it (prepare)."""
