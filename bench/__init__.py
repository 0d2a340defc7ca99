"""vinyl's benchmark: ``python -m bench`` (see bench/run.py and the README's Benchmarks section)."""
