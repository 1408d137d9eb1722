"""Asset keys: `<schema>/<table>` for every warehouse table, so the graph reads like the warehouse."""

import dagster as dg

QUARANTINE = dg.AssetKey(["marts", "quarantine"])


def raw(name: str) -> dg.AssetKey:
    return dg.AssetKey(["raw", name])


def staging(name: str) -> dg.AssetKey:
    return dg.AssetKey(["staging", name])


def marts(name: str) -> dg.AssetKey:
    return dg.AssetKey(["marts", name])
