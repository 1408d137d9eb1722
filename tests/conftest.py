"""Shared helpers: write raw files, build the warehouse (fast, no Dagster) or run the real job."""

from __future__ import annotations

import textwrap
from datetime import date
from pathlib import Path

import dagster as dg
import duckdb
import polars as pl
import pytest

from churn_pipeline.lib import churn_tables, cohorts, high_risk, ingest, sql_models, survival
from churn_pipeline.lib.adapters import load_adapter, load_through_adapter
from churn_pipeline.lib.duck import scan_table
from churn_pipeline.lib.price_changes import churn_by_price_change
from churn_pipeline.lib.raw_sources import SOURCES
from churn_pipeline.lib.settings import HighRiskSettings

FIXTURES = Path(__file__).parent / "fixtures"


def write_raw(directory: Path, files: dict[str, str]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (directory / name).write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return directory


def sql_parameters(**overrides: object) -> dict[str, object]:
    parameters = {
        "timezone": "UTC",
        "source_timezone": "UTC",
        "reporting_currency": "USD",
        "inactivity_days": 90,
        "as_of": None,
        "price_change_window_months": 3,
        "downgrade_is_churn": False,
    }
    parameters.update(overrides)
    return parameters


class Built:
    """A warehouse built with the library functions the assets call (no Dagster)."""

    def __init__(
        self,
        raw_dir: Path,
        high_risk_settings: HighRiskSettings | None = None,
        source: str | None = None,
        source_options: dict[str, str] | None = None,
        **parameters: object,
    ):
        if source:  # the adapter's defaults apply unless given, as on the command line
            adapter = load_adapter(source)
            parameters.setdefault("source_timezone", adapter.source_timezone or "UTC")
            parameters.setdefault("reporting_currency", adapter.reporting_currency or "USD")
        self.parameters = sql_parameters(**parameters)
        self.conn = duckdb.connect()
        self.conn.execute("set TimeZone = 'UTC'")
        for raw_source in SOURCES:
            if source:
                adapter = load_adapter(source)
                load_through_adapter(self.conn, adapter, raw_source, raw_dir, adapter.options(source_options or {}))
            else:
                ingest.load_source(self.conn, raw_source, raw_dir)
        for model in sql_models.topological_order(sql_models.load_models()):
            sql_models.run_model(self.conn, model, self.parameters)
        self.last_complete_month: date = self.sql("select last_complete_month from staging.int_observation_window").item()
        self.high_risk_settings = high_risk_settings or HighRiskSettings()

    def sql(self, query: str, parameters: dict | None = None) -> pl.DataFrame:
        return self.conn.sql(query, params=parameters).pl()

    def frame(self, table: str) -> pl.LazyFrame:
        return scan_table(self.conn, table)

    def cohort_retention(self) -> pl.DataFrame:
        return cohorts.cohort_retention(
            self.frame("staging.int_customers"), self.frame("staging.int_cohort_activity"), self.last_complete_month
        ).collect()

    def retention_curve(self) -> pl.DataFrame:
        return survival.life_table(self.frame("staging.int_customers"), ["basis"]).collect()

    def published_tables(self) -> dict[str, pl.DataFrame]:
        """Every table the job publishes, computed with the same library calls."""
        customers, lcm = self.frame("staging.int_customers"), self.last_complete_month
        cohort_retention = self.cohort_retention()
        monthly = churn_tables.churn_by_month(self.sql("select * from staging.int_monthly_movements"))
        return {
            "cohort_retention": cohort_retention,
            "retention_curve": self.retention_curve(),
            "high_risk_months": self.high_risk_months(),
            "churn_by_cohort": churn_tables.churn_by_cohort(customers, cohort_retention.lazy(), lcm),
            "churn_by_channel": churn_tables.churn_by_channel(customers, lcm),
            "churn_by_segment": churn_tables.churn_by_segment(customers, lcm),
            "churn_by_price_change": churn_by_price_change(
                self.frame("staging.int_price_change_exposure"), customers, int(self.parameters["price_change_window_months"])
            ),
            "churn_by_month": monthly,
            "churn_by_quarter": churn_tables.churn_by_quarter(monthly),
            "churn_reactivation": churn_tables.churn_reactivation(self.frame("staging.int_churn_returns"), customers),
        }

    def high_risk_months(self) -> pl.DataFrame:
        return high_risk.high_risk_months(
            self.retention_curve(), self.high_risk_settings, int(self.parameters["inactivity_days"])
        )


def run_job(raw_dir: Path, workdir: Path, warehouse: dict | None = None, **pipeline: object) -> dg.ExecuteInProcessResult:
    """The real Dagster job, in-process, as `churn-pipeline run` does it."""
    from churn_pipeline.definitions import defs

    config = {"raw_dir": str(raw_dir), "output_dir": str(workdir / "marts"), **pipeline}
    run_config = {
        "resources": {
            "pipeline": {"config": config},
            "warehouse": {"config": {"database": str(workdir / "warehouse.duckdb"), **(warehouse or {})}},
        }
    }
    with dg.DagsterInstance.ephemeral() as instance:
        return (
            defs()
            .resolve_job_def("churn_pipeline_job")
            .execute_in_process(run_config=run_config, instance=instance, raise_on_error=False)
        )


@pytest.fixture
def worked_example_dir() -> Path:
    return FIXTURES / "worked_example"
