"""Column schemas for the asset catalog, declared up front (before any run) from
`dbt_like_sql/schema.yml`, with the published tables' descriptions from `table_docs.py`."""

import dagster as dg

from churn_pipeline.lib.raw_sources import RawSource
from churn_pipeline.lib.schemas import load_schemas
from churn_pipeline.lib.table_docs import TABLES_BY_NAME


def table_schema(schema: str, table: str) -> dg.TableSchema:
    documented = TABLES_BY_NAME[table].columns if schema == "marts" and table in TABLES_BY_NAME else {}
    columns = load_schemas().get(f"{schema}.{table}", ())
    return dg.TableSchema(
        columns=[
            dg.TableColumn(column.name, column.data_type, description=documented.get(column.name) or column.description or None)
            for column in columns
        ]
    )


def raw_schema(source: RawSource) -> dg.TableSchema:
    return table_schema("raw", source.name)
