"""Benchmark of orb-learning's analytics and view refresh job (``python bench/run.py``)."""
