"""Execution: run one task end to end (see executor.py)."""
