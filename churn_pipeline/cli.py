"""`churn-pipeline`: run the Dagster asset graph in-process, or generate raw data."""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import time
from pathlib import Path

import duckdb
from pydantic import BaseModel

from churn_pipeline.lib.adapters import AdapterError, check_adapter_inputs, load_adapter
from churn_pipeline.lib.ingest import RawInputError, check_unchanged, preflight
from churn_pipeline.lib.settings import PipelineSettings, SettingsError, WarehouseSettings, cli_flag, validated


def _add_setting_flags(parser: argparse.ArgumentParser, model: type[BaseModel]) -> None:
    """One flag per declared setting (lib/settings.py), typed and documented as declared."""
    for name, field in model.model_fields.items():
        flag, default = cli_flag(model, name), field.get_default()
        shown = f" (default: {default})" if default not in (None, {}, False) else ""
        help_text = f"{field.description}{shown}"
        annotation = field.annotation
        if annotation is bool:
            parser.add_argument(flag, dest=name, action="store_true", help=help_text)
        elif name == "source_options":
            parser.add_argument(flag, dest=name, action="append", default=[], metavar="KEY=VALUE", help=help_text)
        else:
            kind = next((t for t in (int, float) if annotation in (t, t | None)), str)
            parser.add_argument(flag, dest=name, type=kind, default=default, help=help_text)


def _run_parser(sub: argparse._SubParsersAction) -> None:
    run = sub.add_parser("run", help="ingest raw files, build every model and publish every table")
    _add_setting_flags(run, PipelineSettings)
    _add_setting_flags(run, WarehouseSettings)
    months = run.add_mutually_exclusive_group()
    months.add_argument(
        "--month",
        default=None,
        metavar="YYYY-MM",
        help="load only this month's delivery (raw_dir/YYYY-MM/) and publish as of its close",
    )
    months.add_argument(
        "--months",
        default=None,
        metavar="FIRST..LAST",
        help="backfill: load these months' deliveries in one run, publish as of the last one's close",
    )


def _generate_parser(sub: argparse._SubParsersAction) -> None:
    gen = sub.add_parser("generate", help="write realistic raw data with planted, documented patterns")
    gen.add_argument("--out", required=True, help="directory to write the raw files into")
    gen.add_argument("--customers", type=int, default=2000, help="customers per basis (default: 2000)")
    gen.add_argument("--order-customers", type=int, default=None, help="customers of the orders basis (default: --customers)")
    gen.add_argument("--months", type=int, default=24, help="months of history (default: 24)")
    gen.add_argument("--seed", type=int, default=7, help="random seed (default: 7)")
    gen.add_argument("--spike-month", type=int, default=5, help="lifetime month with a churn spike; -1 for none (default: 5)")
    gen.add_argument("--spike-factor", type=float, default=2.5, help="how many times the usual hazard (default: 2.5)")
    gen.add_argument("--messy-share", type=float, default=0.0, help="share of deliberately bad rows, 0..0.5 (default: 0)")
    gen.add_argument("--format", choices=["csv", "parquet", "mixed"], default="csv", help="file format (default: csv)")
    gen.add_argument("--start", default="2023-01-01", help="first month of history (default: 2023-01-01)")
    gen.add_argument(
        "--layout",
        choices=["flat", "monthly"],
        default="flat",
        help="flat: files in --out; monthly: one delivery folder per month, out/YYYY-MM/ (default: flat)",
    )


def _sql_parser(sub: argparse._SubParsersAction) -> None:
    sql = sub.add_parser("sql", help="query the published warehouse read-only (no writes, no file access, settings locked)")
    sql.add_argument("query", help='one SQL query, e.g. "select * from marts.high_risk_months where is_high_risk"')
    sql.add_argument("--warehouse", default="data/warehouse.duckdb", help="DuckDB file (default: data/warehouse.duckdb)")
    sql.add_argument(
        "--format",
        choices=["table", "csv", "json", "markdown"],
        default="table",
        help="table: DuckDB's box rendering, at most --max-rows rows (default); csv, json (one array of objects) "
        "and markdown: every row",
    )
    sql.add_argument("--max-rows", type=int, default=40, help="rows a table shows; it says how many it left out (default: 40)")


class _Parser(argparse.ArgumentParser):
    """argparse, with a mistake reported in one line (usage stays in --help)."""

    def error(self, message: str) -> None:
        self.exit(2, f"churn-pipeline: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="churn-pipeline", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    _run_parser(sub)
    _generate_parser(sub)
    _sql_parser(sub)
    return parser


def command_sql(args: argparse.Namespace) -> int:
    import duckdb

    from churn_pipeline.lib.analyst import WarehouseUnreadable, connect_readonly

    try:
        conn = connect_readonly(args.warehouse)
    except FileNotFoundError as exc:
        raise SettingsError(str(exc)) from None
    except WarehouseUnreadable as exc:
        print(f"churn-pipeline: error: {exc}", file=sys.stderr)
        return 1
    try:
        statements = conn.extract_statements(args.query)
        if len(statements) != 1:
            print(f"churn-pipeline: error: sql runs exactly one statement; this has {len(statements)}", file=sys.stderr)
            return 2
        result = conn.sql(args.query)
        if result is None:  # a statement that returns no rows
            return 0
        if args.format == "table":
            # DuckDB's renderer keeps every column name whole and says how many rows and columns it left out
            width = shutil.get_terminal_size((250, 40)).columns if sys.stdout.isatty() else 100_000
            result.show(max_width=width, max_rows=max(args.max_rows, 1))
            return 0
        frame = result.pl()
    except duckdb.Error as exc:
        print(f"churn-pipeline: query failed: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 1
    finally:
        conn.close()
    sys.stdout.write(format_rows(frame, args.format))
    return 0


def format_rows(frame, form: str) -> str:
    """Every row of a query's result as csv, json (an array of objects) or a markdown table."""
    import polars as pl

    if form == "csv":
        return frame.write_csv()
    if form == "json":
        return frame.write_json() + "\n"
    cells = frame.select(
        pl.col(name).cast(pl.String)
        if not dtype.is_nested()
        else pl.col(name).map_elements(lambda value: json.dumps(value, default=str), return_dtype=pl.String)
        for name, dtype in frame.schema.items()
    )
    escaped = cells.fill_null("").with_columns(pl.all().str.replace_all("|", "\\|", literal=True))
    lines = ["| " + " | ".join(frame.columns) + " |", "|" + "---|" * frame.width]
    lines += ["| " + " | ".join(row) + " |" for row in escaped.iter_rows()]
    return "\n".join(lines) + "\n"


def _settings(args: argparse.Namespace) -> tuple[PipelineSettings, WarehouseSettings]:
    """The run's settings from its flags, each checked as declared (one line naming a wrong one)."""
    values = {**vars(args), "source_options": _source_options(args.source_options)}
    if args.source:
        load_adapter(args.source).options(values["source_options"])
    pipeline = validated(PipelineSettings, **{name: values[name] for name in PipelineSettings.model_fields})
    warehouse = validated(WarehouseSettings, **{name: values[name] for name in WarehouseSettings.model_fields})
    return pipeline, warehouse


def run_config(pipeline: PipelineSettings, warehouse: WarehouseSettings) -> dict:
    """The Dagster run config of the same settings: what the UI's launchpad would send."""
    return {
        "resources": {
            "pipeline": {"config": pipeline.model_dump(exclude_defaults=True)},
            "warehouse": {"config": warehouse.model_dump(exclude_defaults=True)},
        },
        "loggers": {"console": {"config": {"log_level": "ERROR"}}},
    }


def _source_options(pairs: list[str]) -> dict[str, str]:
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise SettingsError(f"--source-option: {pair!r} is not KEY=VALUE")
        options[key.strip()] = value.strip()
    return options


def _failure_line(result) -> str:
    """The first failed check (its name, asset and what it saw), else the first failed step, in one line."""
    for evaluation in result.get_asset_check_evaluations():
        if not evaluation.passed:
            return f"check {evaluation.check_name} on {evaluation.asset_key.to_user_string()} failed: {evaluation.description}"
    for event in result.get_step_failure_events():
        from churn_pipeline.defs.alerts import step_failure

        return step_failure(event)
    return "the run failed (see the Dagster event log)"


def _months(args: argparse.Namespace) -> tuple[str, ...] | None:
    """The delivery months asked for (each must have a folder of raw files, checked by preflight)."""
    from churn_pipeline.lib.months import month_keys

    if args.month:
        return month_keys(args.month, args.month)
    if args.months:
        first, sep, last = args.months.partition("..")
        if not sep:
            raise SettingsError(f"--months: {args.months!r} is not FIRST..LAST, e.g. 2024-01..2024-06")
        return month_keys(first, last)
    return None


def _check_unchanged(database: Path, raw_dir: Path) -> None:
    """Before a full refresh starts: the delivery files the warehouse was loaded from are all there, unchanged."""
    conn = duckdb.connect(str(database), read_only=True)
    try:
        check_unchanged(conn, raw_dir)
    finally:
        conn.close()


def check_spark_available(warehouse: WarehouseSettings, pipeline: PipelineSettings) -> None:
    """What `--engine spark` needs before a run starts, each missing piece named in one line."""
    import importlib.util

    if importlib.util.find_spec("pyspark") is None or importlib.util.find_spec("sqlglot") is None:
        raise SettingsError("--engine spark: pyspark is not installed; pip install 'churn-pipeline[spark]' (or make test)")
    if not warehouse.spark_remote and not (shutil.which("java") or os.environ.get("JAVA_HOME")):
        raise SettingsError("--engine spark: local Spark needs Java 17 (java on PATH or JAVA_HOME), or --spark-remote")


def command_run(args: argparse.Namespace) -> int:
    pipeline, warehouse = _settings(args)
    months = _months(args)
    if args.source and months:
        raise SettingsError(f"--month: source {args.source} loads whole files; run it without --month/--months")
    files = (
        check_adapter_inputs(load_adapter(args.source), pipeline.raw_path)
        if args.source
        else preflight(pipeline.raw_path, months)
    )
    if warehouse.engine == "spark":
        check_spark_available(warehouse, pipeline)
    elif pipeline.full_refresh and not pipeline.rebuild_from_files and Path(warehouse.database).exists():
        _check_unchanged(Path(warehouse.database), pipeline.raw_path)
    scope = f" for {months[0]}..{months[-1]}" if months else ""
    print(f"churn-pipeline: {len(files)} raw files in {pipeline.raw_dir}{scope}", flush=True)

    from churn_pipeline.dagster_home import project_instance
    from churn_pipeline.launch import launch_run

    started = time.perf_counter()
    with project_instance() as instance:
        result = launch_run(instance, pipeline, warehouse, run_config(pipeline, warehouse), months)
        evaluations = result.get_asset_check_evaluations()
        if not result.success or not all(evaluation.passed for evaluation in evaluations):
            print(f"churn-pipeline: failed: {_failure_line(result)}", file=sys.stderr)
            return 1
    checks = len(evaluations)
    print(
        f"churn-pipeline: done in {time.perf_counter() - started:.1f}s, {checks} checks passed; "
        f"warehouse {warehouse.location}, Parquet in {pipeline.output_dir}; run {result.run_id} in {instance.root_directory}",
        flush=True,
    )
    return 0


def command_generate(args: argparse.Namespace) -> int:
    from churn_pipeline.lib.generate import GeneratorConfig, generate

    config = GeneratorConfig(
        customers=args.customers,
        order_customers=args.order_customers,
        months=args.months,
        seed=args.seed,
        spike_month=None if args.spike_month < 0 else args.spike_month,
        spike_factor=args.spike_factor,
        messy_share=args.messy_share,
        file_format=args.format,
        start=args.start,
        layout=args.layout,
    )
    started = time.perf_counter()
    written = generate(Path(args.out), config)
    for path, rows in written.items():
        print(f"{path}: {rows:,} rows")
    print(f"churn-pipeline: generated in {time.perf_counter() - started:.1f}s")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("  %(message)s"))
    progress = logging.getLogger("churn_pipeline.progress")
    progress.handlers = [handler]
    progress.setLevel(logging.INFO)
    progress.propagate = False
    try:
        commands = {"run": command_run, "generate": command_generate, "sql": command_sql}
        return commands[args.command](args)
    except (RawInputError, SettingsError, AdapterError, ValueError) as exc:
        print(f"churn-pipeline: error: {exc}", file=sys.stderr)
        return 2


def console_main() -> None:
    """The `churn-pipeline` command."""
    try:
        sys.exit(main())
    except BrokenPipeError:
        # the reader stopped early (`churn-pipeline sql ... | head`): not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(0)


if __name__ == "__main__":
    console_main()
