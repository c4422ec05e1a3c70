"""The ``runlog`` command line: thin typer commands over the library."""

import os

# numpy (which pyarrow imports) starts an OpenBLAS thread pool on import, and its threads spin for a while
# after: on a 2-core machine that took ~6 % of the CPU of a summarize that never multiplies a matrix. The
# command line does no linear algebra, so one BLAS thread is enough; a user's own setting wins.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
