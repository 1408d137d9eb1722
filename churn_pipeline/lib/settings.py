"""Pipeline settings: one validated, immutable object shared by every step."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

CONTRACT_VERSION = "1"

_CURRENCY = re.compile(r"^[A-Z]{3}$")


class SettingsError(ValueError):
    """A user setting is wrong; the message is one line naming the setting."""


def parse_timezone(name: str, setting: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise SettingsError(
            f"{setting}: unknown time zone {name!r} (use an IANA name such as 'UTC' or 'Europe/London')"
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


@dataclass(frozen=True)
class HighRiskSettings:
    """How high-risk lifetime months are detected (see docs/high_risk_months.md)."""

    neighbours: int = 2
    """Months on each side whose pooled hazard forms a month's baseline."""
    min_at_risk: int = 30
    """Months with fewer customers at risk are too thin to judge."""
    min_churned: int = 5
    """Months with fewer churns than this are too few to judge, whatever the lift."""
    min_lift: float = 1.5
    """Hazard must be at least this multiple of the baseline."""
    alpha: float = 0.05
    """Family-wise error rate across all months tested (Holm-Bonferroni)."""

    def __post_init__(self) -> None:
        if self.neighbours < 1:
            raise SettingsError("high_risk.neighbours: must be at least 1")
        if self.min_at_risk < 1:
            raise SettingsError("high_risk.min_at_risk: must be at least 1")
        if self.min_lift <= 1:
            raise SettingsError("high_risk.min_lift: must be greater than 1")
        if not 0 < self.alpha < 1:
            raise SettingsError("high_risk.alpha: must be between 0 and 1")


@dataclass(frozen=True)
class PipelineSettings:
    raw_dir: Path = Path("data/raw")
    output_dir: Path = Path("data/marts")
    as_of: datetime | None = None
    timezone: str = "UTC"
    source_timezone: str = "UTC"
    reporting_currency: str = "USD"
    inactivity_days: int = 90
    price_change_window_months: int = 3
    high_risk: HighRiskSettings = field(default_factory=HighRiskSettings)

    def __post_init__(self) -> None:
        parse_timezone(self.timezone, "--timezone")
        parse_timezone(self.source_timezone, "--source-timezone")
        if not _CURRENCY.match(self.reporting_currency):
            raise SettingsError(f"reporting_currency: {self.reporting_currency!r} is not an ISO-4217 code such as 'USD'")
        if not 1 <= self.inactivity_days <= 3660:
            raise SettingsError(f"--inactivity-days: {self.inactivity_days} is outside 1..3660")
        if not 1 <= self.price_change_window_months <= 36:
            raise SettingsError(f"--price-change-window: {self.price_change_window_months} is outside 1..36 (months)")
        if self.as_of is not None and self.as_of.tzinfo is None:
            raise SettingsError("as_of: must be timezone-aware")


def check_warehouse_settings(memory_limit: str | None, threads: int | None, temp_directory: str | None) -> None:
    """DuckDB's resource settings, checked before any work: DuckDB itself parses the memory limit."""
    if memory_limit is not None:
        import duckdb

        with duckdb.connect() as conn:
            try:
                conn.execute("set memory_limit = $value", {"value": memory_limit})
            except duckdb.Error:
                raise SettingsError(f"--memory-limit: cannot read {memory_limit!r} as a size (e.g. 4GB, 512MB)") from None
    if threads is not None and not 1 <= threads <= 1024:
        raise SettingsError(f"--threads: {threads} is outside 1..1024")
    if temp_directory is not None and Path(temp_directory).exists() and not Path(temp_directory).is_dir():
        raise SettingsError(f"--temp-dir: {temp_directory} exists and is not a directory")
