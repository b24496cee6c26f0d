"""Evaluation of the rag system: JSONL suites, deterministic metrics, reports, ablations and a quality gate.

Run it with `rag eval` or `python -m evals`; evals/README.md documents the suite format and every metric.
"""
