"""The README's first command: the demo runs every step against a fresh emulator."""

from __future__ import annotations

import io

from rich.console import Console

from d365_components.demo import run_demo


def test_demo_runs_a_sales_day_end_to_end() -> None:
    out = Console(file=io.StringIO(), width=160)
    run_demo(out)
    text = out.file.getvalue()
    assert "Done: 21 steps" in text
    assert "2,000 written, 0 failed" in text and "2,000 rows, 2,000 distinct" in text
    assert "Won, actual revenue 48,000" in text
    assert "Qualify -> Develop" in text                                           # the stage move
    assert "13 open, weighted 180,000 (aggregate)" in text                      # the pipeline report
    assert "Resolve by: In progress" in text                                    # the SLA check
    top = text.split("Top Contoso leads", 1)[1].split("└", 1)[0]
    amounts = [float(line.split("│")[3].replace(",", "")) for line in top.splitlines() if "Contoso" in line]
    assert len(amounts) == 5 and amounts == sorted(amounts, reverse=True)
