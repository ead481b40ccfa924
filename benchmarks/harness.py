"""Shared shape of a benchmark result and the runner behind `make bench`.

Each `benchmarks/bench_*.py` exposes `run(workdir: Path) -> list[Result]`; the runner calls
them all and writes `benchmarks/results.json`, the source of the README's figures. Ratios are
always against a baseline measured in the same run on the same machine, never a stored number.
"""

from __future__ import annotations

import argparse
import fcntl
import importlib
import json
import logging
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results.json"


@dataclass(frozen=True)
class Result:
    """`ratio` = value / baseline; `met` compares it with `target` in the stated direction."""

    name: str
    value: float
    unit: str
    baseline: float
    ratio: float
    target: float
    met: bool

    @classmethod
    def _of(
        cls, name: str, value: float, unit: str, baseline: float, target: float, met: bool
    ) -> Result:
        return cls(
            name, round(value, 4), unit, round(baseline, 4), round(value / baseline, 4), target, met
        )

    @classmethod
    def at_least(cls, name: str, value: float, unit: str, baseline: float, target: float) -> Result:
        return cls._of(name, value, unit, baseline, target, value / baseline >= target)

    @classmethod
    def at_most(cls, name: str, value: float, unit: str, baseline: float, target: float) -> Result:
        return cls._of(name, value, unit, baseline, target, value / baseline <= target)


def timed(fn, *args, **kwargs) -> tuple[float, object]:  # noqa: ANN001
    started = time.perf_counter()
    out = fn(*args, **kwargs)
    return time.perf_counter() - started, out


def _merge(results: list[dict], names: list[str]) -> None:
    """Replace these benchmarks' rows in results.json, keeping the others'; the file is read
    under a lock at the end so concurrent runs of different benchmarks keep each other's rows."""
    with open(HERE / ".results.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        previous = json.loads(RESULTS.read_text()) if RESULTS.exists() else []
        kept = [r for r in previous if r["name"].split(":")[0] not in names]
        RESULTS.write_text(json.dumps(kept + results, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="run the benchmarks, write results.json")
    parser.add_argument("only", nargs="*", help="benchmark module names (default: all)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    names = args.only or sorted(p.stem for p in HERE.glob("bench_*.py"))
    failed = []
    for name in names:
        module = importlib.import_module(f"benchmarks.{name}")
        # Each benchmark's rows are written as soon as it ends: one that fails later (after an
        # hour of others) neither loses them nor stops the rest.
        try:
            with tempfile.TemporaryDirectory(prefix=f"{name}-") as tmp:
                rows = [
                    {**asdict(result), "name": f"{name}:{result.name}"}
                    for result in module.run(Path(tmp))
                ]
        except Exception:
            logging.exception("benchmark %s failed; its previous rows are kept", name)
            failed.append(name)
            continue
        for row in rows:
            print(json.dumps(row), flush=True)
        _merge(rows, [name])
    print(f"wrote {RESULTS}" + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
