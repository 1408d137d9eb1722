"""Benchmark: the pipeline against its peers on the same files, in one run.

    .venv/bin/python benchmarks/run.py --scale medium

Generates data with `churn-pipeline generate`, then times, each as its own process (wall, CPU,
peak RSS from wait4): the lower bound (DuckDB loading every raw file once), the pandas script
users write today (retention counts only), and the full pipeline through the CLI (all tables,
all checks, the report). Optionally the incremental case: 36 monthly deliveries (6 at tiny) loaded, then
one new month, against a full rebuild. With `--repeat N` every measurement runs N times, the
peers and the pipeline taking turns, and the medians decide. Prints PASS/FAIL per target and
writes the markdown table to <work>/<scale>/results.md; `--update-docs` also puts it into
docs/benchmarks.md's "Latest results", in place of that scale's previous table.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
SCALES = {
    # name: (subscription customers, order customers, months, chunks)
    "tiny": (300, 150, 12, 1),
    "small": (10_000, 5_000, 24, 1),
    "medium": (1_000_000, 500_000, 24, 1),
    "large": (10_000_000, 5_000_000, 24, 10),
}
# monthly deliveries in the incremental case; the smoke test's scale needs only a few
INCREMENTAL_MONTHS = {"tiny": 6}
# the warehouse file before the ingest issue (#29) at 96cb1ae, which kept a text copy of every raw row
WAREHOUSE_BEFORE_MB = {"medium": 824}


@dataclass
class Measured:
    name: str
    wall_s: float
    cpu_s: float
    peak_rss_mb: float
    returncode: int


def measure(name: str, command: list[str], log: Path, env: dict | None = None) -> Measured:
    """Run one process; wall clock, user+system CPU and peak RSS of that process alone."""
    started = time.perf_counter()
    with log.open("w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, env=env)
        _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    result = Measured(name, wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, process.returncode)
    print(
        f"  {name:<34} {wall:8.1f} s wall {result.cpu_s:8.1f} s CPU {result.peak_rss_mb:8.0f} MB peak"
        f"{'' if result.returncode == 0 else f'  FAILED (exit {result.returncode}, see {log})'}",
        flush=True,
    )
    return result


def generate(raw: Path, scale: str, layout: str, months: int | None, work: Path) -> Measured:
    customers, order_customers, default_months, chunks = SCALES[scale]
    months = months or default_months
    if chunks == 1:
        return measure(
            f"generate ({layout})",
            [
                str(BIN / "churn-pipeline"),
                "generate",
                "--out",
                str(raw),
                "--customers",
                str(customers),
                "--order-customers",
                str(order_customers),
                "--months",
                str(months),
                "--seed",
                "7",
                "--layout",
                layout,
            ],
            work / f"generate_{layout}.log",
        )
    # in chunks with distinct ids, so the generator never holds the large scale in memory
    command = [
        sys.executable,
        "-c",
        _CHUNKED,
        str(raw),
        str(customers // chunks),
        str(order_customers // chunks),
        str(months),
        str(chunks),
        layout,
    ]
    return measure(f"generate ({layout}, {chunks} chunks)", command, work / f"generate_{layout}.log")


_CHUNKED = """
import shutil, sys
from pathlib import Path
from churn_pipeline.lib.generate import GeneratorConfig, generate
raw, customers, orders, months, chunks, layout = Path(sys.argv[1]), *map(int, sys.argv[2:6]), sys.argv[6]
raw.mkdir(parents=True, exist_ok=True)
for k in range(chunks):
    part = raw / f".chunk{k}"
    generate(part, GeneratorConfig(customers=customers, order_customers=orders, months=months, seed=7 + k,
                                   id_prefix=f"k{k}", layout=layout))
    for path in sorted(part.rglob("*.csv")):
        target = raw / path.relative_to(part).parent / f"{path.stem}_chunk{k}.csv"
        target.parent.mkdir(parents=True, exist_ok=True)
        if path.name != "fx_rates.csv" or k == 0:
            shutil.move(path, target if path.name != "fx_rates.csv" else raw / "fx_rates.csv")
    shutil.rmtree(part)
"""


def code_version() -> str:
    """The commit the benchmark measures, marked when tracked files outside docs/ differ from it."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        changed = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":!docs"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return commit + (" with uncommitted changes" if changed else "")


def raw_rows(raw: Path) -> int:
    import duckdb

    files = [str(p) for p in raw.rglob("*.csv") if not p.name.startswith("fx_rates")]
    return duckdb.sql(
        "select count(*) from read_csv($f, all_varchar = true, union_by_name = true)", params={"f": files}
    ).fetchall()[0][0]


def pipeline_command(raw: Path, work: Path, *extra: str, warehouse: str = "warehouse.duckdb") -> list[str]:
    return [
        str(BIN / "churn-pipeline"),
        "run",
        "--raw-dir",
        str(raw),
        "--warehouse",
        str(work / warehouse),
        "--output-dir",
        str(work / "marts"),
        "--temp-dir",
        str(work / "spill"),
        *extra,
    ]


def asset_timings(log: Path) -> list[tuple[str, float]]:
    timings = []
    for line in log.read_text().splitlines():
        match = re.match(r"\s+(\S+)\s+(?:[\d,]+ (?:rows|bytes|files)|view)\s+([\d.]+)s", line)
        if match:
            timings.append((match.group(1), float(match.group(2))))
    return sorted(timings, key=lambda t: -t[1])


def fresh(path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def summarize(runs: list[Measured]) -> dict:
    """One step over its rounds: median wall and CPU, the largest peak, the first failure, every wall time."""
    failed = [run.returncode for run in runs if run.returncode != 0]
    return {
        "name": re.sub(r" #\d+$", "", runs[0].name),
        "wall_s": statistics.median(run.wall_s for run in runs),
        "cpu_s": statistics.median(run.cpu_s for run in runs),
        "peak_rss_mb": max(run.peak_rss_mb for run in runs),
        "returncode": failed[0] if failed else 0,
        "walls": [run.wall_s for run in runs],
    }


def ratio(numerators: list[Measured], denominators: list[Measured], field: str = "wall_s") -> dict:
    """A ratio per round (both measured in the same round, so a slow hour slows both), and their median."""
    values = [getattr(a, field) / getattr(b, field) for a, b in zip(numerators, denominators, strict=True)]
    return {"median": statistics.median(values), "rounds": values}


def round_tag(index: int, repeat: int) -> str:
    return f" #{index + 1}" if repeat > 1 else ""


def run(scale: str, work: Path, incremental: bool, memory_limit: str | None, repeat: int = 1, spark: bool = False) -> dict:
    work = work / scale
    # the pipeline's runs record into a Dagster instance of the benchmark's own
    os.environ["DAGSTER_HOME"] = str(fresh(work / "dagster_home"))
    work.mkdir(parents=True, exist_ok=True)
    raw = work / "raw"
    print(f"scale {scale}: {SCALES[scale]}", flush=True)
    results: dict = {
        "scale": scale,
        "code": code_version(),
        "measured": {},
        "repeat": repeat,
        "command": " ".join(
            [
                "--scale",
                scale,
                *(["--memory-limit", memory_limit] if memory_limit else []),
                *(["--incremental"] if incremental else []),
                *(["--spark"] if spark else []),
                *([f"--repeat {repeat}"] if repeat > 1 else []),
            ]
        ),
    }
    if not (raw / ".complete").exists():
        fresh(raw)
        results["measured"]["generate"] = summarize([generate(raw, scale, "flat", None, work)])
        (raw / ".complete").touch()
    results["raw_rows"] = raw_rows(raw)
    results["raw_bytes"] = sum(p.stat().st_size for p in raw.rglob("*.csv"))
    print(f"  {results['raw_rows']:,} raw rows, {results['raw_bytes'] / 1e9:.2f} GB of CSV", flush=True)

    if scale == "large":
        # the tutorial script holds every row in pandas: ten times medium's memory, more than this machine has
        results["skipped"] = ["pandas tutorial: it holds every raw row in memory (4.0 GB at medium, ~10x that here)"]
        print(f"  skipped: {results['skipped'][0]}", flush=True)
    # as pip does for an installed package; an editable install under PYTHONDONTWRITEBYTECODE
    # (set on this VM and on CI) recompiles every module of the package on every run
    compileall.compile_dir(ROOT / "churn_pipeline", quiet=1)
    extra = ["--memory-limit", memory_limit] if memory_limit else []
    # the peers and the pipeline take turns, round after round, so a change of the VM's speed
    # within the run reaches all of them
    lower, pandas, pipeline = [], [], []
    for index in range(repeat):
        tag = round_tag(index, repeat)
        lower.append(
            measure(
                f"lower bound (DuckDB load){tag}",
                [sys.executable, str(ROOT / "benchmarks/lower_bound.py"), str(raw), str(work / "lower_bound.duckdb")],
                work / "lower_bound.log",
            )
        )
        (work / "lower_bound.duckdb").unlink(missing_ok=True)
        if scale != "large":
            pandas.append(
                measure(
                    f"pandas tutorial (counts only){tag}",
                    [sys.executable, str(ROOT / "benchmarks/pandas_cohorts.py"), str(raw), str(work / "pandas_out")],
                    work / "pandas.log",
                )
            )
        pipeline_work = fresh(work / "pipeline")
        pipeline.append(
            measure(f"pipeline (CLI, everything){tag}", pipeline_command(raw, pipeline_work, *extra), work / "pipeline.log")
        )
    on_spark: list[Measured] = []
    if spark:
        # a figure, not a target: the same CLI run with --engine spark, after the DuckDB rounds
        driver = ["--spark-driver-memory", memory_limit.lower().removesuffix("b")] if memory_limit else []
        for index in range(repeat):
            spark_work = fresh(work / "pipeline_spark")
            command = pipeline_command(raw, spark_work, "--engine", "spark", *driver, warehouse="spark-warehouse")
            on_spark.append(measure(f"pipeline on Spark (CLI, local[2]){round_tag(index, repeat)}", command, work / "spark.log"))
        shutil.rmtree(work / "pipeline_spark", ignore_errors=True)
    results["warehouse_mb"] = (work / "pipeline" / "warehouse.duckdb").stat().st_size / 1e6
    steps = {"lower bound (DuckDB load)": lower, "pandas tutorial (counts only)": pandas, "pipeline (CLI, everything)": pipeline}
    results["measured"].update({name: summarize(runs) for name, runs in steps.items() if runs})
    results["asset_timings"] = asset_timings(work / "pipeline.log")
    results["ratios"] = {"pipeline / lower bound": ratio(pipeline, lower)}
    if pandas:
        results["ratios"]["pipeline / pandas"] = ratio(pipeline, pandas)
    if on_spark:
        results["measured"]["pipeline on Spark (CLI, local[2])"] = summarize(on_spark)
        results["ratios"]["pipeline: Spark / DuckDB"] = ratio(on_spark, pipeline)

    if incremental:
        if scale == "large":
            # the incremental case holds three warehouses of ~13 GB each, and a fourth while a run builds
            shutil.rmtree(work / "pipeline", ignore_errors=True)
        monthly = work / "raw_monthly"
        if not (monthly / ".complete").exists():
            fresh(monthly)
            generate(monthly, scale, "monthly", INCREMENTAL_MONTHS.get(scale, 36), work)
            (monthly / ".complete").touch()
        months = sorted(p.name for p in monthly.iterdir() if p.is_dir() and re.match(r"^\d{4}-\d{2}$", p.name))
        history = fresh(work / "history")
        measure(
            f"history ({len(months) - 1} months)",
            pipeline_command(monthly, history, "--months", f"{months[0]}..{months[-2]}", *extra),
            work / "history.log",
        )
        rebuilds, ones = [], []
        for index in range(repeat):
            tag = round_tag(index, repeat)
            rebuild_work = fresh(work / "rebuild")
            rebuilds.append(
                measure(
                    f"full rebuild ({len(months)} months){tag}",
                    pipeline_command(monthly, rebuild_work, "--months", f"{months[0]}..{months[-1]}", *extra),
                    work / "rebuild.log",
                )
            )
            # each round's new month starts from the same 35 months (a copy of them, not timed)
            incremental_work = work / "incremental"
            shutil.rmtree(incremental_work, ignore_errors=True)
            shutil.copytree(history, incremental_work)
            ones.append(
                measure(
                    f"one new month ({months[-1]}){tag}",
                    pipeline_command(monthly, incremental_work, "--month", months[-1], *extra),
                    work / "one_month.log",
                )
            )
        results["measured"].update({"full rebuild": summarize(rebuilds), "one new month": summarize(ones)})
        results["ratios"]["one month / full rebuild"] = ratio(ones, rebuilds)
        results["ratios"]["one month / full rebuild (CPU)"] = ratio(ones, rebuilds, "cpu_s")
        results["incremental_asset_timings"] = asset_timings(work / "one_month.log")[:8]
    results["finished_at"] = f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
    results["targets"] = targets(results, work.parent)
    (work / "results.json").write_text(json.dumps(results, indent=2, default=str))
    return results


def targets(results: dict, work: Path) -> list[tuple[str, bool]]:
    measured, scale = results["measured"], results["scale"]
    ratios = {name: value["median"] for name, value in results["ratios"].items()}
    pipeline = measured["pipeline (CLI, everything)"]
    checks = [("pipeline succeeded", pipeline["returncode"] == 0)]
    if scale == "medium":
        before = WAREHOUSE_BEFORE_MB["medium"]
        checks += [
            ("medium: pipeline <= 2.5x lower bound", ratios["pipeline / lower bound"] <= 2.5),
            ("medium: pipeline faster than pandas", ratios["pipeline / pandas"] < 1),
            ("medium: peak RSS <= 3 GB", pipeline["peak_rss_mb"] <= 3072),
            (
                f"medium: warehouse <= half of the {before} MB before #29 ({results['warehouse_mb']:.0f} MB)",
                results["warehouse_mb"] <= before / 2,
            ),
        ]
    if scale == "large":
        checks.append(("large: peak RSS <= 6.5 GB", pipeline["peak_rss_mb"] <= 6656))
        medium = work / "medium" / "results.json"
        if medium.exists():
            # the last medium run in this work directory: say which, since it may be older code on a slower hour
            earlier = json.loads(medium.read_text())
            before = earlier["measured"]["pipeline (CLI, everything)"]["wall_s"]
            code = earlier.get("code", "unknown code")
            note = "" if code == results["code"] else "; other code, rerun medium"
            checks.append(
                (
                    f"large: time <= 10x medium ({pipeline['wall_s'] / before:.1f}x the {before:.1f} s medium run of "
                    f"{earlier.get('finished_at', 'an unknown date')} at {code}{note})",
                    pipeline["wall_s"] <= 10 * before,
                )
            )
    if scale == "small":
        checks.append(("small: whole CLI run <= 10 s", pipeline["wall_s"] <= 10))
    if "one month / full rebuild" in ratios:
        checks.append(("incremental: one month <= 20 % of a full rebuild", ratios["one month / full rebuild"] <= 0.20))
    for name, passed in checks:
        print(f"  {'PASS' if passed else 'FAIL'}  {name}", flush=True)
    return checks


def markdown(results: dict) -> str:
    memory_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    lines = [
        f"### {results['scale']} ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC)",
        "",
        f"Machine: {os.cpu_count()} cores, {memory_gb:.0f} GB, {platform.platform()}, Python {platform.python_version()}. "
        f"Scale: {SCALES[results['scale']][0]:,} subscription + {SCALES[results['scale']][1]:,} order customers, "
        f"{results['raw_rows']:,} raw rows, {results['raw_bytes'] / 1e9:.2f} GB of CSV. "
        f"Command: `.venv/bin/python benchmarks/run.py {results['command']}`. Code: {results['code']}. "
        f"Warehouse file after the run: {results.get('warehouse_mb', 0):.0f} MB.",
        "",
    ]
    repeated = results.get("repeat", 1) > 1
    if repeated:
        lines += [
            f"{results['repeat']} rounds, the peers and the pipeline taking turns in each: wall and CPU are medians, "
            "peak RSS the largest; a ratio is the median of the rounds' ratios.",
            "",
        ]
    lines += [
        "| step | wall s | CPU s | peak RSS MB |" + (" rounds, wall s |" if repeated else ""),
        "|---|---:|---:|---:|" + ("---|" if repeated else ""),
    ]
    lines += [
        f"| {m['name']} | {m['wall_s']:.1f} | {m['cpu_s']:.1f} | {m['peak_rss_mb']:.0f} |"
        + (f" {', '.join(f'{wall:.1f}' for wall in m['walls'])} |" if repeated else "")
        for m in results["measured"].values()
    ]
    lines += ["", "| ratio | value |" + (" rounds |" if repeated else ""), "|---|---:|" + ("---|" if repeated else "")]
    lines += [
        f"| {name} | {value['median']:.2f} |" + (f" {', '.join(f'{r:.2f}' for r in value['rounds'])} |" if repeated else "")
        for name, value in results["ratios"].items()
    ]
    lines += ["", "| target | result |", "|---|---|"]
    lines += [f"| {name} | {'PASS' if passed else 'FAIL'} |" for name, passed in results["targets"]]
    lines += [f"\nNot run: {reason}." for reason in results.get("skipped", [])]
    slowest = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in results["asset_timings"][:8])
    lines += ["", f"Slowest assets: {slowest}."]
    if results.get("incremental_asset_timings"):
        lines += [
            f"One new month, slowest assets: {', '.join(f'{n} {s:.1f} s' for n, s in results['incremental_asset_timings'])}."
        ]
    return "\n".join(lines) + "\n\n"


DOCS = ROOT / "docs" / "benchmarks.md"


def replace_latest(page: Path, scale: str, table: str) -> None:
    """Put `table` between the page's `<!-- latest: scale -->` markers (added at the end if missing)."""
    begin, end = f"<!-- latest: {scale} -->", f"<!-- /latest: {scale} -->"
    text = page.read_text(encoding="utf-8")
    block = f"{begin}\n{table.strip()}\n{end}"
    if begin in text and end in text:
        text = text[: text.index(begin)] + block + text[text.index(end) + len(end) :]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    page.write_text(text, encoding="utf-8")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", choices=list(SCALES), default="small")
    parser.add_argument("--work", default=str(ROOT / "benchmarks" / "out"), help="where data and outputs go (git-ignored)")
    parser.add_argument("--report", default=None, help="markdown file for the table (default: <work>/<scale>/results.md)")
    parser.add_argument(
        "--update-docs", action="store_true", help="also replace this scale's table in docs/benchmarks.md's latest results"
    )
    parser.add_argument(
        "--incremental", action="store_true", help="also time one new month against a full rebuild (36 months; 6 at tiny)"
    )
    parser.add_argument("--memory-limit", default=None, help="DuckDB memory_limit for the pipeline, e.g. 3GB")
    parser.add_argument("--repeat", type=int, default=1, help="rounds of every measurement, taking turns (medians are reported)")
    parser.add_argument(
        "--spark",
        action="store_true",
        help="also time the same CLI run with --engine spark (local[2]): a figure, not a target",
    )
    args = parser.parse_args()
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    results = run(args.scale, Path(args.work), args.incremental, args.memory_limit, args.repeat, args.spark)
    table = markdown(results)
    report = Path(args.report) if args.report else Path(args.work) / args.scale / "results.md"
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(table, encoding="utf-8")
    print(f"wrote {report}")
    if args.update_docs:
        replace_latest(DOCS, args.scale, table)
        print(f"updated the {args.scale} table in {DOCS}")
    return 0 if all(passed for _, passed in results["targets"]) else 1


if __name__ == "__main__":
    sys.exit(main())
