"""Cold start: wall time of a fresh interpreter for `import d365_components` plus building the
registry, `d365 --help` and `d365 list`, against `python -c pass` (medians, min-max; interleaved).

    .venv/bin/python bench/cold_start_bench.py [--trials 15] [--baseline DIR]

``--baseline DIR`` also times another version installed in DIR (``pip install --no-deps --target DIR
<its source>``), interleaved with this one, and prints this one's medians as ratios to it: on a
shared machine whose load moves, that comparison holds where absolute figures do not.

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


#: the CLI run through the interpreter, as the `d365` script does, for an install without the script
CLI = "import sys; from d365_components.cli import main; sys.argv[0] = 'd365'; main()"


def baseline_cases() -> dict[str, tuple[list[str], int | None]]:
    return {
        "baseline: import + registry": (CASES["import d365_components + registry"][0], None),
        "baseline: d365 --help": ([sys.executable, "-c", CLI, "--help"], None),
        "baseline: d365 list": ([sys.executable, "-c", CLI, "list"], None),
    }


def wall(command: list[str], env: dict[str, str] = ENV) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, env=env)
    return (time.perf_counter() - started) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=15)
    parser.add_argument("--baseline", metavar="DIR", help="another version installed with pip --target DIR")
    args = parser.parse_args()
    cases = dict(CASES)
    envs = dict.fromkeys(CASES, ENV)
    if args.baseline:
        extra = baseline_cases()
        cases.update(extra)
        envs.update({name: {**ENV, "PYTHONPATH": os.path.abspath(args.baseline)} for name in extra})
    times: dict[str, list[float]] = {name: [] for name in cases}
    for name, (command, _) in cases.items():  # warm the file and bytecode caches once
        wall(command, envs[name])
    for _ in range(args.trials):
        for name, (command, _) in cases.items():  # interleaved: A B C D A B C D ...
            times[name].append(wall(command, envs[name]))
    base = statistics.median(times["python -c pass"])
    print(f"cold start, {args.trials} trials each, interleaved; wall time of the whole process")
    for name, (_, goal) in cases.items():
        median = statistics.median(times[name])
        verdict = "" if goal is None else f"  goal <= {goal} ms: {'MET' if median <= goal else 'NOT MET'}"
        print(f"  {name:36} median {median:6.0f} ms (min {min(times[name]):.0f}, max {max(times[name]):.0f})"
              f"  = {median / base:4.1f}x the median of `python -c pass`{verdict}")

    if args.baseline:
        print("this version / the baseline (median / median):")
        for mine, theirs in zip(list(CASES)[1:], baseline_cases(), strict=True):
            ratio = statistics.median(times[mine]) / statistics.median(times[theirs])
            print(f"  {mine:36} {ratio:.2f}x")


if __name__ == "__main__":
    main()
