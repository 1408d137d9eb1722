"""Materialization metadata that reads well in the Dagster UI, plus CLI progress lines."""

import logging
from datetime import date, datetime

import dagster as dg
import polars as pl

progress_log = logging.getLogger("churn_pipeline.progress")

_DAGSTER_TYPES = {
    pl.String: "string",
    pl.Int32: "int",
    pl.Int64: "bigint",
    pl.Float64: "double",
    pl.Boolean: "boolean",
    pl.Date: "date",
}


def column_schema(frame: pl.DataFrame, descriptions: dict[str, str] | None = None) -> dg.TableSchema:
    descriptions = descriptions or {}
    return dg.TableSchema(
        columns=[
            dg.TableColumn(name, _DAGSTER_TYPES.get(dtype.base_type(), str(dtype)), description=descriptions.get(name))
            for name, dtype in frame.schema.items()
        ]
    )


def markdown_table(frame: pl.DataFrame, limit: int = 12) -> str:
    """A small markdown table of the first rows (numbers rounded for reading)."""
    shown = frame.head(limit).with_columns(pl.selectors.float().round(4))
    header = "| " + " | ".join(shown.columns) + " |"
    rule = "|" + "---|" * len(shown.columns)
    body = ["| " + " | ".join("" if v is None else str(v) for v in row) + " |" for row in shown.iter_rows()]
    more = [f"\n_{frame.height - limit} more rows_"] if frame.height > limit else []
    return "\n".join([header, rule, *body, *more])


def observation_metadata(as_of: datetime | None, last_complete_month: date | None) -> dict[str, object]:
    return {
        "as_of": dg.MetadataValue.text(as_of.isoformat() if as_of else "none (no data)"),
        "last_complete_month": dg.MetadataValue.text(str(last_complete_month) if last_complete_month else "none"),
    }


def report(context: dg.AssetExecutionContext, count: int | None, seconds: float, extra: str = "", unit: str = "rows") -> None:
    """One progress line: what the step wrote (`count` `unit`s; None for a view, not counted)."""
    name = context.asset_key.to_user_string()
    written = f"{count:>10,} {unit:<5}" if count is not None else f"{'view':>16}"
    line = f"{name:<48} {written} {seconds:>7.2f}s{'  ' + extra if extra else ''}"
    context.log.info(line)
    progress_log.info(line)


def note(context: dg.AssetExecutionContext, text: str) -> None:
    """A line under the step's progress line, for something the user should know."""
    line = f"{context.asset_key.to_user_string()}: {text}"
    context.log.info(line)
    progress_log.info(f"  {line}")
