"""Every benchmark, one after the other (what `make bench` runs): build, staging, cold start, serving, defaults.

    python -m benchmarks.run_all [--quick] [--only build,staging,cold_start,serving,defaults]

``--quick`` runs short versions (one build round, one staging round, the serving smoke run, a 2 x 2 sweep).
Each benchmark prints its tables and writes benchmarks/results/NAME-*.json; a failure in one is reported and the
others still run. Exits 1 when any failed.
"""

from __future__ import annotations

import argparse
import importlib
import time
import traceback
from collections.abc import Sequence

ORDER = ("build", "staging", "cold_start", "serving", "defaults")
QUICK = {
    "build": ["--rounds", "1", "--no-cold"],
    "staging": ["--rounds", "1"],
    "cold_start": ["--samples", "text-classification"],
    "serving": ["--quick"],
    "defaults": ["--batch-sizes", "8,32", "--delays", "5,20", "--seconds", "5", "--no-extra"],
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run_all", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", default=",".join(ORDER))
    args = parser.parse_args(argv)
    failed = []
    for name in [n for n in args.only.split(",") if n]:
        if name not in ORDER:
            parser.error(f"unknown benchmark {name!r}; expected some of {','.join(ORDER)}")
        print(f"\n=== benchmarks.{name} ===", flush=True)
        started = time.perf_counter()
        try:
            importlib.import_module(f"benchmarks.{name}").main(QUICK[name] if args.quick else [])
        except (Exception, SystemExit) as exc:
            failed.append(name)
            print(f"benchmarks.{name} failed: {exc!r}")
            traceback.print_exc()
        print(f"=== benchmarks.{name}: {time.perf_counter() - started:.0f} s ===", flush=True)
    if failed:
        print(f"\nfailed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
