"""The one compiled part of mnistbench: the fused optimizer steps, loss and layer passes
(src/mnistbench/scratch/kernels.c).

Everything else is in pyproject.toml. The flags keep the kernels' arithmetic that of the NumPy reference: no FMA
contraction, no fast-math reordering (sqrt without errno lets the compiler use the SIMD square root, which is
correctly rounded). The build records the SHA-256 of the source it compiled, so that a checkout whose kernels.c
changed after `pip install -e .` is noticed (scratch/fused.py). Without a C compiler the install still succeeds
(optional=True) and the optimizers, the loss and the layers run their NumPy references, which give the same bits,
only slower.
"""

import hashlib
from pathlib import Path

from setuptools import Extension, setup

SOURCE = "src/mnistbench/scratch/kernels.c"
FLAGS = ["-O3", "-fno-fast-math", "-fno-math-errno", "-ffp-contract=off", "-std=c11"]

setup(
    ext_modules=[
        Extension(
            "mnistbench.scratch._kernels",
            sources=[SOURCE],
            extra_compile_args=FLAGS,
            define_macros=[("KERNELS_SOURCE_SHA256", f'"{hashlib.sha256(Path(SOURCE).read_bytes()).hexdigest()}"')],
            optional=True,
        )
    ]
)
