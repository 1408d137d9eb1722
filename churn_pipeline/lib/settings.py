"""Every run setting, declared once: name, type, default, help and check.

`PipelineSettings` and `WarehouseSettings` are the declaration. The Dagster resources extend
them (their fields are the run config), the CLI derives its flags from their fields
(`cli_flag`, help from the description), SQL models bind the fields marked `sql`, and tests
take their defaults from them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

CONTRACT_VERSION = "1"

_CURRENCY = re.compile(r"^[A-Z]{3}$")


class SettingsError(ValueError):
    """A user setting is wrong; the message is one line naming the setting."""


def setting(default: Any, help: str, *, flag: str | None = None, sql: bool = False) -> Any:
    """A declared setting: `flag` overrides the CLI flag `--<name-with-dashes>`; `sql` binds it as `$<name>`."""
    extra = {key: value for key, value in (("flag", flag), ("sql", sql)) if value}
    return Field(default=default, description=help, json_schema_extra=extra or None)


def parse_timezone(name: str, setting_name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise SettingsError(
            f"{setting_name}: unknown time zone {name!r} (use an IANA name such as 'UTC' or 'Europe/London')"
        ) from None
    return name


def parse_as_of(value: str | None) -> datetime | None:
    """An ISO-8601 instant; naive values are read as UTC. Returns an aware UTC datetime."""
    if value is None or value == "":
        return None
    text = value.strip().replace("Z", "+00:00").replace("z", "+00:00")
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise SettingsError(f"--as-of: cannot read {value!r} as an ISO-8601 timestamp (e.g. 2024-07-10T00:00:00Z)") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def _within(value: float, low: float, high: float, flag: str, unit: str = "") -> float:
    if not low <= value <= high:
        raise SettingsError(f"{flag}: {value} is outside {low}..{high}{unit}")
    return value


@dataclass(frozen=True)
class HighRiskSettings:
    """How high-risk lifetime months are detected (docs/high_risk_months.md); PipelineSettings.high_risk."""

    neighbours: int
    min_at_risk: int
    min_churned: int
    min_lift: float
    alpha: float


class PipelineSettings(BaseModel):
    """Where the raw files are, where outputs go, and how time and churn are defined."""

    model_config = ConfigDict(extra="forbid")

    raw_dir: str = setting("data/raw", "directory of orders*/subscription_events*/fx_rates* files")
    source: str | None = setting(None, "a source adapter in dbt_like_sql/sources/ (e.g. online_retail, foodie_fi)")
    source_options: dict[str, str] = setting({}, "adapter options, KEY=VALUE (repeatable)", flag="--source-option")
    output_dir: str = setting("data/marts", "where Parquet tables and the report are written")
    as_of: str | None = setting(None, "end of observation, ISO-8601 (default: the latest valid event or order)")
    timezone: str = setting("UTC", "reporting time zone of month buckets", sql=True)
    source_timezone: str | None = setting(None, "time zone of naive raw timestamps (default: the adapter's, else UTC)", sql=True)
    reporting_currency: str | None = setting(None, "currency of published money (default: the adapter's, else USD)", sql=True)
    inactivity_days: int = setting(90, "orders basis: days without an order that make a churn", sql=True)
    downgrade_is_churn: bool = setting(False, "subscription basis: a move to a cheaper plan counts as churn", sql=True)
    price_change_window_months: int = setting(
        3, "months before and after a price change to compare", flag="--price-change-window", sql=True
    )
    full_refresh: bool = setting(
        False, "rebuild the incremental models from every loaded month instead of appending (as dbt's --full-refresh)"
    )
    rebuild_from_files: bool = setting(
        False,
        "with --full-refresh: rebuild from the delivery files as they are now, even those that changed since they were loaded",
    )
    high_risk_neighbours: int = setting(2, "high-risk months: months on each side whose pooled hazard is the baseline")
    high_risk_min_at_risk: int = setting(30, "high-risk months: months with fewer customers at risk are too thin to judge")
    high_risk_min_churned: int = setting(5, "high-risk months: months with fewer churns are too few to judge")
    high_risk_min_lift: float = setting(1.5, "high-risk months: hazard must be at least this multiple of the baseline")
    high_risk_alpha: float = setting(0.05, "high-risk months: family-wise error rate across the months tested (Holm)")

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        return parse_timezone(value, "--timezone")

    @field_validator("source_timezone")
    @classmethod
    def _source_timezone(cls, value: str | None) -> str | None:
        return None if value is None else parse_timezone(value, "--source-timezone")

    @field_validator("reporting_currency")
    @classmethod
    def _currency(cls, value: str | None) -> str | None:
        if value is not None and not _CURRENCY.match(value):
            raise SettingsError(f"--reporting-currency: {value!r} is not an ISO-4217 code such as 'USD'")
        return value

    @field_validator("as_of")
    @classmethod
    def _as_of(cls, value: str | None) -> str | None:
        parse_as_of(value)
        return value

    @field_validator("inactivity_days")
    @classmethod
    def _inactivity(cls, value: int) -> int:
        return int(_within(value, 1, 3660, "--inactivity-days"))

    @field_validator("price_change_window_months")
    @classmethod
    def _window(cls, value: int) -> int:
        return int(_within(value, 1, 36, "--price-change-window", " (months)"))

    @field_validator("high_risk_neighbours", "high_risk_min_at_risk")
    @classmethod
    def _at_least_one(cls, value: int, info) -> int:
        if value < 1:
            raise SettingsError(f"{cli_flag(cls, info.field_name)}: must be at least 1")
        return value

    @field_validator("high_risk_min_lift")
    @classmethod
    def _lift(cls, value: float) -> float:
        if value <= 1:
            raise SettingsError("--high-risk-min-lift: must be greater than 1")
        return value

    @field_validator("high_risk_alpha")
    @classmethod
    def _alpha(cls, value: float) -> float:
        if not 0 < value < 1:
            raise SettingsError("--high-risk-alpha: must be between 0 and 1")
        return value

    @property
    def raw_path(self) -> Path:
        return Path(self.raw_dir)

    @property
    def output_path(self) -> Path:
        return Path(self.output_dir)

    @property
    def naive_timezone(self) -> str:
        """`source_timezone`, else the source adapter's, else UTC."""
        return self.source_timezone or self._adapter_default("source_timezone") or "UTC"

    @property
    def currency(self) -> str:
        """`reporting_currency`, else the source adapter's, else USD."""
        return self.reporting_currency or self._adapter_default("reporting_currency") or "USD"

    def _adapter_default(self, name: str) -> str | None:
        if not self.source:
            return None
        from churn_pipeline.lib.adapters import load_adapter

        return getattr(load_adapter(self.source), name)

    @property
    def high_risk(self) -> HighRiskSettings:
        return HighRiskSettings(
            neighbours=self.high_risk_neighbours,
            min_at_risk=self.high_risk_min_at_risk,
            min_churned=self.high_risk_min_churned,
            min_lift=self.high_risk_min_lift,
            alpha=self.high_risk_alpha,
        )

    def sql_parameters(self, as_of: datetime | None = None) -> dict[str, object]:
        """The values SQL models bind (`$timezone`, `$as_of`, ...): the fields marked `sql`, and as_of
        as an instant (`as_of` when given, else the explicit setting)."""
        values = {name: getattr(self, name) for name, field in type(self).model_fields.items() if _extra(field).get("sql")}
        values["source_timezone"] = self.naive_timezone
        values["reporting_currency"] = self.currency
        instant = as_of or parse_as_of(self.as_of)
        values["as_of"] = instant.isoformat() if instant else None
        return values


ENGINES = ("duckdb", "spark")
DUCKDB_WAREHOUSE = "data/warehouse.duckdb"
SPARK_WAREHOUSE = "data/spark-warehouse"


class WarehouseSettings(BaseModel):
    """The warehouse (a DuckDB file by default, or a Spark warehouse) and what its engine may use."""

    model_config = ConfigDict(extra="forbid")

    engine: str = setting("duckdb", "the engine that builds the warehouse: duckdb or spark (docs/scale_out.md)")
    database: str = setting(
        DUCKDB_WAREHOUSE, f"the DuckDB file; with --engine spark the Spark warehouse ({SPARK_WAREHOUSE})", flag="--warehouse"
    )
    spark_remote: str | None = setting(None, "with --engine spark: a Spark Connect server, sc://host:port (default: local Spark)")
    spark_driver_memory: str | None = setting(None, "with local Spark: the JVM's memory, e.g. 4g (Spark's default: 1g)")
    memory_limit: str | None = setting(None, "DuckDB memory_limit, e.g. 4GB")
    threads: int | None = setting(None, "DuckDB threads")
    temp_directory: str | None = setting(
        None, "where DuckDB spills when memory runs short (default: beside the warehouse)", flag="--temp-dir"
    )
    lock_timeout_seconds: float = setting(600.0, "how long a run waits for another run on the same warehouse")

    @field_validator("memory_limit")
    @classmethod
    def _memory_limit(cls, value: str | None) -> str | None:
        if value is not None:
            import duckdb

            with duckdb.connect() as conn:
                try:
                    conn.execute("set memory_limit = $value", {"value": value})
                except duckdb.Error:
                    raise SettingsError(f"--memory-limit: cannot read {value!r} as a size (e.g. 4GB, 512MB)") from None
        return value

    @field_validator("engine")
    @classmethod
    def _engine(cls, value: str) -> str:
        if value not in ENGINES:
            raise SettingsError(f"--engine: {value!r} is not one of {', '.join(ENGINES)}")
        return value

    @field_validator("spark_remote")
    @classmethod
    def _spark_remote(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("sc://"):
            raise SettingsError(f"--spark-remote: {value!r} is not a Spark Connect address, sc://host:port")
        return value

    @field_validator("spark_driver_memory")
    @classmethod
    def _spark_driver_memory(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[1-9][0-9]*[kmgt]", value.strip().lower()):
            raise SettingsError(f"--spark-driver-memory: {value!r} is not a JVM size such as 4g or 512m")
        return None if value is None else value.strip().lower()

    @model_validator(mode="after")
    def _options_need_spark(self) -> WarehouseSettings:
        for flag, value in (("--spark-remote", self.spark_remote), ("--spark-driver-memory", self.spark_driver_memory)):
            if value and self.engine != "spark":
                raise SettingsError(f"{flag}: only with --engine spark")
        return self

    @property
    def location(self) -> Path:
        """The DuckDB file, or the Spark warehouse directory (data/spark-warehouse unless named)."""
        if self.engine == "spark" and self.database == DUCKDB_WAREHOUSE:
            return Path(SPARK_WAREHOUSE)
        return Path(self.database)

    @field_validator("threads")
    @classmethod
    def _threads(cls, value: int | None) -> int | None:
        return None if value is None else int(_within(value, 1, 1024, "--threads"))

    @field_validator("temp_directory")
    @classmethod
    def _temp_directory(cls, value: str | None) -> str | None:
        if value is not None and Path(value).exists() and not Path(value).is_dir():
            raise SettingsError(f"--temp-dir: {value} exists and is not a directory")
        return value


def _extra(field) -> dict:
    return field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}


def cli_flag(model: type[BaseModel], name: str) -> str:
    """The command-line flag of a declared setting."""
    return _extra(model.model_fields[name]).get("flag") or "--" + name.replace("_", "-")


def validated(model: type[BaseModel], **values: Any) -> Any:
    """`model(**values)`, with a wrong value reported as one SettingsError line naming its setting."""
    try:
        return model(**values)
    except ValidationError as exc:
        error = exc.errors()[0]
        cause = error.get("ctx", {}).get("error")
        if isinstance(cause, SettingsError):
            raise SettingsError(str(cause)) from None
        name = str(error["loc"][0]) if error["loc"] else ""
        flag = cli_flag(model, name) if name in model.model_fields else name
        raise SettingsError(f"{flag}: {error['msg']}") from None
