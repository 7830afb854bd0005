"""Ingestion of operator drops: manifests, parsing per contract layout, validation, lifecycle.

Split by concern so that the Dagster assets stay thin:
``manifest`` (the operators' interface), ``landing`` (scanning the landing area, routing),
``layout`` (bytes -> canonical staging Parquet), ``rules`` (contract rules -> DuckDB SQL and
GX suites), ``lifecycle`` (drops table, raw copy, quarantine, publish, supersede).
"""
