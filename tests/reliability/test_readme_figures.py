"""The README's "Reliability" section quotes the figures these tests assert."""

from pathlib import Path

from tests.reliability import (
    test_bad_input,
    test_cancel_points,
    test_load,
    test_roundtrip,
    test_unreachable,
)


def _section() -> str:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    return readme.split("## Reliability", 1)[1].split("\n## ", 1)[0]


def test_readme_quotes_the_asserted_figures():
    text = _section()
    quarter = test_load.TASKS // 4
    for figure in [
        f"{test_load.TASKS:,} concurrent tasks",
        f"{quarter} reads, {quarter} writes, {quarter} transfer transactions",
        f"max_size {test_load.POOL_MAX}",
        f"{len(test_cancel_points.SEEDS)} × {test_cancel_points.TASKS} ORM tasks",
        f"mid-fetch of {test_cancel_points.BIG:,} rows",
        f"{len(test_bad_input.CASES)} cases",
        f"{len(test_bad_input.SQL_STRINGS)} SQL-looking strings",
        f"{test_bad_input.HUGE_IN:,}-value",
        f"{test_roundtrip.EXAMPLES} hypothesis examples",
        "rows lost 0",
        f"in under {test_unreachable.FAST:g} s",
    ]:
        assert figure in text, figure
