"""The Dagster definitions, one module per domain; `churn_pipeline/definitions.py` loads this
folder with `dg.load_from_defs_folder`, as in Dagster's project scaffold."""
