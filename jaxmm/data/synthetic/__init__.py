"""Synthetic benchmarks generated from JAX PRNG keys (vmappable over keys and knobs)."""
