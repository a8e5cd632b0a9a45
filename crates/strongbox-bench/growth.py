#!/usr/bin/env python3
"""How each cost grows with the data: `strongbox-bench --records N --json` at several N, each a
run of its own (so that each has its own peak memory), then one table and one plot.

    cargo build --release -p strongbox-bench
    python3 crates/strongbox-bench/growth.py --records 20000,200000,1000000 --duration 4

Writes OUT/N.json (the bench's report at N), OUT/growth.md (the table) and OUT/growth.png (ops/s
against N, one line per workload; needs matplotlib: `pip install matplotlib`). Every figure is
the bench's; nothing here measures. Options after `--` go to the bench as they are.
"""

import argparse
import json
import pathlib
import subprocess
import sys

# (JSON prefix, label): the workloads plotted and tabled, in the bench's own names.
WORKLOADS = [
    ("bulk_load", "bulk load"),
    ("write", "concurrent durable writes"),
    ("write_single", "single durable writes"),
    ("read_cold", "cold reads, uniform"),
    ("read_cold_zipf", "cold reads, Zipfian"),
    ("read_hit", "cache hits (cache: 10% of the data)"),
    ("mixed", "mixed 50/50, Zipfian"),
]


def run_bench(bench, records, duration, extra):
    command = [bench, "--records", str(records), "--duration", str(duration), "--json", *extra]
    print("running:", " ".join(command), file=sys.stderr, flush=True)
    done = subprocess.run(command, check=True, stdout=subprocess.PIPE, text=True)
    return json.loads(done.stdout)


def table(reports):
    sizes = sorted(reports)
    head = "| | " + " | ".join(f"{n:,}" for n in sizes) + " |"
    rule = "|---" * (len(sizes) + 1) + "|"
    rows = [head, rule]

    def row(label, cell):
        rows.append(f"| {label} | " + " | ".join(cell(reports[n]) for n in sizes) + " |")

    for name, label in WORKLOADS:
        row(f"{label}, ops/s", lambda r, name=name: f"{r[name + '_ops_per_s']:,.0f}")
    for name, label in WORKLOADS:
        # The mix has no counterpart in the original approach.
        if all(name in reports[n]["ratios"] for n in sizes):
            row(f"{label} / BitCraps", lambda r, name=name: f"{r['ratios'][name]:.2f}x")
    row("cache hit ratio", lambda r: f"{r['read_hit_ratio'] * 100:.1f}%")
    row("write p99 without maintenance, µs", lambda r: f"{r['write_without_maintenance_p99_us']:,}")
    row("write p99 during maintenance, µs", lambda r: f"{r['write_during_maintenance_p99_us']:,}")
    row("p99 during / without", lambda r: f"{r['ratios']['write_p99_during_maintenance']:.2f}x")
    row("first maintenance, ms", lambda r: f"{r['maintenance_ms']:,}")
    row("file bytes per record", lambda r: f"{r['file_bytes_per_record']:,.0f}")
    row("file / BitCraps file", lambda r: f"{r['ratios']['file_bytes']:.2f}x")
    # What the change feed holds of the file (`dbstat`): one change per record loaded and per
    # update the run made before the file was measured.
    row("of which the change feed, bytes per record", changes_per_record)
    row("peak RSS of our workloads, MiB", lambda r: f"{r['store_rss_bytes'] / 2**20:,.0f}")
    row("cache budget, MiB", lambda r: f"{r['cache_capacity_bytes'] / 2**20:,.0f}")
    return "\n".join(rows) + "\n"


def changes_per_record(report):
    changes = report.get("file_table_bytes", {}).get("changes")
    return "–" if changes is None else f"{changes / report['records']:,.0f}"


def plot(reports, path):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("no matplotlib: the plot is not drawn (pip install matplotlib)", file=sys.stderr)
        return False
    sizes = sorted(reports)
    figure, axes = plt.subplots(figsize=(8, 5))
    for name, label in WORKLOADS:
        axes.plot(sizes, [reports[n][name + "_ops_per_s"] for n in sizes], marker="o", label=label)
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xlabel("records")
    axes.set_ylabel("operations per second")
    axes.set_title("Strongbox as the data grows (strongbox-bench --records N)")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize="small")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    return True


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", default="20000,200000,1000000")
    parser.add_argument("--duration", default="4")
    parser.add_argument("--bench", default="target/release/strongbox-bench")
    parser.add_argument("--out", default="docs/growth")
    parser.add_argument("--reuse", action="store_true", help="read OUT/N.json where it exists")
    parser.add_argument("extra", nargs="*", help="options for the bench (after --)")
    args = parser.parse_args()
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    reports = {}
    for records in (int(n) for n in args.records.split(",")):
        saved = out / f"{records}.json"
        if args.reuse and saved.exists():
            reports[records] = json.loads(saved.read_text())
            continue
        reports[records] = run_bench(args.bench, records, args.duration, args.extra)
        saved.write_text(json.dumps(reports[records], indent=2) + "\n")
    text = table(reports)
    (out / "growth.md").write_text(text)
    print(text)
    if plot(reports, out / "growth.png"):
        print(f"plot: {out / 'growth.png'}", file=sys.stderr)


if __name__ == "__main__":
    main()
