# Two entry points for a fresh machine (only python3, git and make needed):
#   make run    set up .venv, then run the whole pipeline on the embedded sample
#   make test   set up .venv, then run the test suite
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed
SPARK_STAMP := $(VENV)/.installed-spark

.PHONY: run test lint setup lock clean dev

run: $(STAMP)
	$(VENV)/bin/churn-pipeline run

# one worker per core; a module's tests stay on one worker, so its fixtures are built once
test: $(STAMP) $(SPARK_STAMP)
	$(VENV)/bin/python -m pytest -q -n auto --dist loadscope $(PYTEST_ARGS)

setup: $(STAMP)

# ruff (format and lint) and sqlfluff, as .ci/run runs them before the tests
lint: $(STAMP)
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .
	$(VENV)/bin/sqlfluff lint dbt_like_sql --processes 2

# the Dagster UI and daemon on the instance `churn-pipeline run` records into
dev: $(STAMP)
	home="$$($(VENV)/bin/python -m churn_pipeline.dagster_home)" && \
	DAGSTER_HOME="$$home" PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(VENV)/bin/dg dev

$(STAMP): requirements.lock pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements.lock
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	$(VENV)/bin/python -m compileall -q churn_pipeline
	touch $(STAMP)

# the `spark` extra (pyspark, sqlglot), for the tests and `--engine spark`; `make run` does without it
$(SPARK_STAMP): $(STAMP) requirements-spark.lock
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-spark.lock
	touch $(SPARK_STAMP)

# Regenerate the lock files from the current environment (maintainers only).
SPARK_PACKAGES := ^(googleapis-common-protos|grpcio-status|py4j|pyspark|sqlglot|zstandard)==
lock:
	$(VENV)/bin/python -m pip freeze --exclude-editable | grep -v -E '^(uv|pip|setuptools|wheel)==' | grep -v -E '$(SPARK_PACKAGES)' > requirements.lock
	$(VENV)/bin/python -m pip freeze --exclude-editable | grep -E '$(SPARK_PACKAGES)' > requirements-spark.lock

clean:
	rm -rf $(VENV) data/warehouse.duckdb* data/marts
