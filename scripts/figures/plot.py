"""Figures of one run folder of ``jaxsim-montecarlo``, from its files alone.

    python -m scripts.figures.plot RUN_DIR [--format png,pdf,svg] [--out DIR]

Draws reward and delay CDFs, per-type and per-cell bars with 95% t intervals, delay against SINR and against the
chosen server's load, and server load over time (``experiment.run_plots``) into RUN_DIR/figures (or --out), and
prints the files written. ``jaxsim-montecarlo --plot`` does the same at the end of a run.
"""

from __future__ import annotations

import argparse
import sys

from experiment.plotting import parse_formats
from experiment.run_plots import plot_run
from jaxsim.fields import ConfigError


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run_dir", metavar="RUN_DIR", help="a run folder written by jaxsim-montecarlo (--out)")
    ap.add_argument("--format", default="png", help="comma-separated: png, pdf, svg (default png)")
    ap.add_argument("--out", help="folder for the figures (default RUN_DIR/figures)")
    args = ap.parse_args(argv)
    try:
        written = plot_run(args.run_dir, parse_formats(args.format), args.out,
                           log=lambda m: print(m, file=sys.stderr))
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for paths in written.values():
        print("\n".join(paths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
