"""Cold start: wall time of a fresh interpreter for `import d365_components` plus building the
registry, `d365 --help` and `d365 list`, against `python -c pass` (medians, min-max; interleaved).

    .venv/bin/python bench/cold_start_bench.py [--trials 15]

Goals (issue 16): import + registry <= 150 ms, `d365 --help` <= 250 ms, `d365 list` <= 400 ms.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

BIN = os.path.dirname(sys.executable)
CASES = {
    "python -c pass": ([sys.executable, "-c", "pass"], None),
    "import d365_components + registry": (
        [sys.executable, "-c", "import d365_components; from d365_components.registry import get_registry; get_registry()"],
        150),
    "d365 --help": ([os.path.join(BIN, "d365"), "--help"], 250),
    "d365 list": ([os.path.join(BIN, "d365"), "list"], 400),
}


#: bytecode is written and reused, as after `pip install` (which compiles it): a shell that sets
#: PYTHONDONTWRITEBYTECODE would otherwise make every start compile every module again
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def wall(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, env=ENV)
    return (time.perf_counter() - started) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=15)
    args = parser.parse_args()
    times: dict[str, list[float]] = {name: [] for name in CASES}
    for command, _ in CASES.values():  # warm the file and bytecode caches once
        wall(command)
    for _ in range(args.trials):
        for name, (command, _) in CASES.items():  # interleaved: A B C D A B C D ...
            times[name].append(wall(command))
    base = statistics.median(times["python -c pass"])
    print(f"cold start, {args.trials} trials each, interleaved; wall time of the whole process")
    for name, (_, goal) in CASES.items():
        median = statistics.median(times[name])
        verdict = "" if goal is None else f"  goal <= {goal} ms: {'MET' if median <= goal else 'NOT MET'}"
        print(f"  {name:36} median {median:6.0f} ms (min {min(times[name]):.0f}, max {max(times[name]):.0f})"
              f"  = {median / base:4.1f}x the median of `python -c pass`{verdict}")


if __name__ == "__main__":
    main()
