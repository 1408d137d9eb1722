"""The code location loads and lists the expected assets, checks and job."""

from __future__ import annotations

import dagster as dg

from churn_pipeline.definitions import defs
from churn_pipeline.defs.outputs import PUBLISHED_TABLES
from churn_pipeline.lib.sql_models import load_models


def test_assets_checks_and_job() -> None:
    graph = defs().resolve_asset_graph()
    keys = {key.to_user_string() for key in graph.get_all_asset_keys()}
    expected_sql = {f"{m.schema}/{m.name}" for m in load_models()}
    assert {"raw/orders", "raw/subscription_events", "raw/fx_rates"} <= keys
    assert expected_sql <= keys
    assert {
        "marts/cohort_retention",
        "marts/retention_curve",
        "marts/high_risk_months",
        "marts/quarantine",
        "churn_report",
        "published",
    } <= keys
    assert {
        "marts/churn_by_cohort",
        "marts/churn_by_channel",
        "marts/churn_by_segment",
        "marts/churn_by_price_change",
        "marts/churn_by_month",
        "marts/churn_by_quarter",
        "marts/churn_reactivation",
    } <= keys
    checks = {(key.asset_key.to_user_string(), key.name) for key in graph.asset_check_keys}
    assert checks == {
        ("marts/quarantine", "raw_rows_reconcile"),
        ("marts/cohort_retention", "retention_rates_within_unit_interval"),
        ("marts/cohort_retention", "cohort_sizes_sum_to_customers"),
        ("marts/cohort_retention", "no_cell_beyond_last_complete_month"),
        ("marts/retention_curve", "survival_never_increases"),
        ("marts/retention_curve", "at_risk_never_increases"),
        ("marts/churn_by_month", "customer_identity_holds"),
        ("marts/churn_by_month", "mrr_identity_holds"),
        ("marts/churn_by_month", "months_chain"),
        ("marts/churn_by_cohort", "customer_months_match_the_curve"),
    } | {(key.to_user_string(), "freshness_check") for key in PUBLISHED_TABLES}
    assert defs().resolve_job_def("churn_pipeline_job") is not None


def test_model_dependencies_come_from_the_sql() -> None:
    graph = defs().resolve_asset_graph()
    parents = {key.to_user_string() for key in graph.get(dg.AssetKey(["staging", "stg_orders"])).parent_keys}
    assert parents == {"raw/orders", "staging/stg_fx_rates"}
    quarantine_parents = {key.to_user_string() for key in graph.get(dg.AssetKey(["marts", "quarantine"])).parent_keys}
    assert {
        "raw/orders",
        "raw/subscription_events",
        "raw/fx_rates",
        "staging/int_subscription_events_lifecycle",
    } <= quarantine_parents


def test_every_asset_has_a_description_and_group() -> None:
    graph = defs().resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        assert node.description, key
        assert node.group_name != "default", key


def test_dg_check_defs_passes() -> None:
    """The project loads as Dagster's `dg` tool loads it ([tool.dg] in pyproject.toml, defs/)."""
    import subprocess
    import sys
    from pathlib import Path

    dg_cli = Path(sys.executable).parent / "dg"
    root = Path(__file__).resolve().parent.parent
    result = subprocess.run([str(dg_cli), "check", "defs"], cwd=root, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "All definitions loaded successfully" in result.stdout + result.stderr
