"""``python -m bench_py.cli``: the same as ``voxbench``."""

import sys

from bench_py.cli import main

sys.exit(main())
