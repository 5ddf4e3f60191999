"""`python -m mnistbench` is the same CLI as the `mnistbench` console script."""

from mnistbench.cli import run

if __name__ == "__main__":
    run()
