"""Benchmarks: ``python -m bench.<name>`` prints figures for the README and issue notes; nothing here
asserts, and none of it is part of the test suite."""
