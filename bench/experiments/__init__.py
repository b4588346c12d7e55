"""The paper's experiments at small scale, each a script with ``main(argv)``; ``run_all`` writes docs/results.md.

Run from the repository root: ``.venv/bin/python -m bench.experiments.run_all [--quick]``.
"""
