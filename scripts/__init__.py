"""Command-line programs, by purpose (each runs as ``python -m scripts.<folder>.<name>``, ``--help`` for its options):

- ``scripts.bench``: benchmarks; each prints a JSON line with ratios against a reference run in the same process.
- ``scripts.figures``: the paper's figures, comparison table and claims (``reproduce`` runs them all).
- ``scripts.studies``: the studies behind the README and docs tables, and the Monte Carlo runner
  (``jaxsim-montecarlo``) with PPO's trainer.
- ``scripts.tools``: data tools and checks: the delay model against measured serving, the roofline's
  calibration, the tokenizer's test data, the config fuzzer.

Library code they share lives in ``experiment/``.
"""
