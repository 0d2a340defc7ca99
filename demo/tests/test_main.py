"""The whole demo, end to end: ``python -m demo`` with short runs exits 0 and prints the table."""

import os
import subprocess
import sys

from demo.__main__ import ROOT


def test_demo_runs(django_db_setup):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "demo", "--seconds", "0.5", "--levels", "1,4"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert "Correctness check OK" in done.stdout
    rows = [row for row in map(str.split, lines) if row[:1] in (["vinyl"], ["django"])]
    rows = [row for row in rows if len(row) == 9 and row[1].isdigit()]  # the table's rows
    assert sorted((row[0], row[1]) for row in rows) == [
        ("django", "1"), ("django", "4"), ("vinyl", "1"), ("vinyl", "4")
    ]  # fmt: skip
    assert all(row[-1] == "0" for row in rows)  # no errors
    assert "Orders:" in done.stdout  # the kitchen_report command ran


def test_demo_runs_with_two_workers(django_db_setup):
    """uvicorn with 2 worker processes, each with its own pools: the correctness checks pass
    (they add up every worker's on_commit count) and both workers took orders."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "demo", "--seconds", "0.5", "--levels", "4", "--workers", "2"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 worker processes" in done.stdout
    assert "Correctness check OK" in done.stdout
    [served] = [line for line in done.stdout.splitlines() if line.startswith("Orders announced")]
    assert served.count("pid ") == 2
