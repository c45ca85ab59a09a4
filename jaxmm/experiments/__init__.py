"""Experiments reproducing the papers' figures; run with ``jaxmm experiment NAME``."""
