"""mnistbench: a hand-written, vectorized NumPy MLP benchmarked against PyTorch on MNIST."""

__version__ = "0.1.0"
