"""`python -m mnistbench` is the same CLI as the `mnistbench` console script."""

from mnistbench.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
