"""Benchmarks: ``python -m bench.<name>``. Figures, not tests: nothing here asserts."""
