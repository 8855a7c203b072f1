"""The load test's figures per user class: written at the end of a run, printed by `make loadtest`.

    python loadtests/_summary.py reports/loadtest      # reads reports/loadtest_users.csv

Locust's own CSV (``PREFIX_stats.csv``) has one row per request name; a user class's requests/s
and percentiles cannot be recovered from those rows (percentiles do not add up), so the
locustfiles write ``PREFIX_users.csv`` from the merged response-time histograms at the end of
the run (with ``--csv PREFIX``). This file only reads and prints it: it needs nothing but Python.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

SUFFIX = "_users.csv"
ALL = "all"  # the row of every request together
COLUMNS = ("user_class", "requests", "failures", "failure_ratio", "requests_per_s", "p50_ms", "p95_ms", "p99_ms",
           "average_ms", "max_ms")


def write_rows(path: Path, rows: list[dict]) -> Path:
    """Write the per-class rows as CSV at ``path``, creating its folder; the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    return path


def read_rows(path: Path) -> list[dict]:
    """The rows of a per-class CSV, figures as floats; ValueError when it lacks a column."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or set(COLUMNS) - set(rows[0]):
        raise ValueError(f"{path} is not a per-class summary (expected the columns {', '.join(COLUMNS)})")
    return [{k: (r[k] if k == "user_class" else float(r[k])) for k in COLUMNS} for r in rows]


def format_rows(rows: list[dict]) -> str:
    """The rows as a text table: requests, failures, requests/s and percentiles in ms."""
    header = (f"{'user class':<12} {'requests':>9} {'failures':>15} {'req/s':>8} "
              f"{'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8}")
    lines = [header, "-" * len(header)]
    for r in rows:
        failures = f"{r['failures']:.0f} ({100 * r['failure_ratio']:.1f}%)"
        lines.append(f"{r['user_class']:<12} {r['requests']:>9.0f} {failures:>15} {r['requests_per_s']:>8.1f} "
                     f"{r['p50_ms']:>8.0f} {r['p95_ms']:>8.0f} {r['p99_ms']:>8.0f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Print the per-class figures of the run with the --csv prefix given; 1 when they are missing or
    unreadable, 2 for a wrong usage."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python loadtests/_summary.py CSV_PREFIX   (the --csv prefix of the locust run)", file=sys.stderr)
        return 2
    path = Path(argv[0] + SUFFIX)
    try:
        rows = read_rows(path)
    except FileNotFoundError:
        print(f"error: no per-class figures at {path}: the locust run with --csv {argv[0]} did not finish",
              file=sys.stderr)
        return 1
    except (ValueError, KeyError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"Per user class ({path}):")
    print(format_rows(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
