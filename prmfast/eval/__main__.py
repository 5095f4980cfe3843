"""`python -m prmfast.eval`: the benchmark CLI (prmfast.eval.benchmarks)."""
import sys

from prmfast.eval.benchmarks import main

sys.exit(main())
