"""Benchmarks: figures for the README and issue notes, never part of the test suite."""
