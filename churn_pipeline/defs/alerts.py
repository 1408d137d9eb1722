"""Where alerts go: a POST to `CHURN_ALERT_WEBHOOK` when it is set (a JSON `{"text": line}`,
as Slack and Teams incoming webhooks take), else a line in `CHURN_ALERT_LOG`, by default
`alerts.log` in the Dagster instance's directory."""

from __future__ import annotations

import json
import re
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg

WEBHOOK_ENV = "CHURN_ALERT_WEBHOOK"
LOG_ENV = "CHURN_ALERT_LOG"


def alert_log(instance: dg.DagsterInstance) -> Path:
    return Path(dg.EnvVar(LOG_ENV).get_value() or Path(instance.root_directory) / "alerts.log")


def send_alert(instance: dg.DagsterInstance, line: str) -> None:
    stamped = f"{datetime.now(UTC).isoformat(timespec='seconds')} {line}"
    webhook = dg.EnvVar(WEBHOOK_ENV).get_value()
    if webhook:
        request = urllib.request.Request(
            webhook, data=json.dumps({"text": stamped}).encode(), headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=10):
            return
    path = alert_log(instance)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as handle:
        handle.write(stamped + "\n")


def step_failure(event: dg.DagsterEvent) -> str:
    """A failed step in one line: `step: message`, the user's error unwrapped from Dagster's."""
    error = event.step_failure_data.error
    while error.cause is not None and error.cls_name == "DagsterExecutionStepExecutionError":
        error = error.cause
    first = (error.message or "").strip().splitlines()
    message = re.sub(r"^[\w.]+(Error|Exception|Failure): ", "", first[0]) if first else error.cls_name
    return f"{event.step_key}: {message}"
