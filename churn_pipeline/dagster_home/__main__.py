"""`python -m churn_pipeline.dagster_home`: create the project's Dagster home if needed, print its path."""

from churn_pipeline.dagster_home import dagster_home

print(dagster_home())
