"""Benchmarks: the pipeline suite (``python benchmarks/suite.py``) and focused scripts.

A package so the suite's modules import by their full name (``benchmarks.suite_stages``)
from the suite, its child processes and the tests; each script still runs by its path.
"""
