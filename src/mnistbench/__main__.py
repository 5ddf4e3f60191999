"""`python -m mnistbench` is the same CLI as the `mnistbench` console script."""

from mnistbench.cli import main

raise SystemExit(main())
