"""The Dagster UI a data engineer opens after `churn-pipeline run`: a real webserver on the
instance the CLI recorded into, driven by headless Chromium. Its screenshots illustrate
docs/operations.md (copied from test-artifacts/ui/ to docs/images/)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from churn_pipeline.cli import main
from churn_pipeline.defs.outputs import PUBLISHED_TABLES

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "data" / "raw"
SHOTS = ROOT / "test-artifacts" / "ui"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _graphql(port: int, query: str) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": query}).encode(),
        headers={"Content-Type": "application/json"},
    )
    return json.loads(urllib.request.urlopen(request, timeout=10).read()).get("data") or {}


def _wait_for(port: int, server: subprocess.Popen, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert server.poll() is None, "the webserver exited"
        try:
            if _graphql(port, "{ assetNodes { id } }").get("assetNodes"):
                return
        except OSError:
            pass
        time.sleep(1)
    raise AssertionError(f"the webserver did not answer within {seconds:.0f} s")


@pytest.mark.slow
def test_the_ui_shows_the_cli_run_every_table_materialized_and_model_columns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (.ci/run installs Debian's chromium; apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    home = tmp_path / "dagster_home"
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    work = tmp_path / "work"
    assert (
        main(["run", "--raw-dir", str(SAMPLE), "--warehouse", str(work / "w.duckdb"), "--output-dir", str(work / "marts")]) == 0
    )

    port = _free_port()
    env = {**os.environ, "DAGSTER_HOME": str(home), "CHURN_RAW_DIR": str(SAMPLE)}
    webserver = Path(sys.executable).parent / "dagster-webserver"
    server = subprocess.Popen(
        [str(webserver), "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    SHOTS.mkdir(parents=True, exist_ok=True)
    try:
        _wait_for(port, server)
        nodes = _graphql(port, "{ assetNodes { assetKey { path } assetMaterializations(limit: 1) { runId } } }")["assetNodes"]
        latest = {"/".join(node["assetKey"]["path"]): node["assetMaterializations"] for node in nodes}
        (run_id,) = {m[0]["runId"] for m in latest.values() if m}
        assert all(latest[key.to_user_string()] for key in PUBLISHED_TABLES), (
            "every published table materialized by the CLI's run"
        )
        assert all(latest.values()), [key for key, m in latest.items() if not m]
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
            page = browser.new_page(viewport={"width": 1400, "height": 900})

            def visit(path: str, shot: str, expect: str) -> str:
                page.goto(f"http://127.0.0.1:{port}{path}", wait_until="networkidle")
                page.get_by_text(expect).first.wait_for(timeout=60_000)
                page.screenshot(path=str(SHOTS / f"{shot}.png"))
                return page.inner_text("body")

            catalog = visit("/assets", "asset_catalog", "Materialized")
            assert "Never materialized" not in catalog
            table = visit("/assets/marts/cohort_retention", "table_cohort_retention", "Latest materialization")
            assert "Never materialized" not in table and "retention_rate" in table
            model = visit("/assets/staging/int_customers", "sql_model_columns", "first_churn_lifetime_month")
            assert "Columns" in model and "TIMESTAMP WITH TIME ZONE" in model and "Never materialized" not in model
            runs = visit("/runs", "runs", "churn_pipeline_job")
            assert "churn_pipeline/launched_by: cli" in runs and "Success" in runs and run_id[:8] in runs
            visit("/automation", "automation", "monthly_churn_schedule")
            browser.close()
    finally:
        server.terminate()  # by its PID
        server.wait(timeout=30)
    assert server.returncode is not None
