"""vinyl's demo: run it with ``make demo`` (or ``python -m demo`` inside the virtualenv)."""
