"""Read-only published API (docs/api.md, decision 017): Starlette on uvicorn over an in-memory copy
of the published datasets, bearer tokens scoped per dataset, one audit record per request.

Entry points: :func:`crowd_platform.api.server.serve` (``crowd-platform serve``),
:func:`crowd_platform.api.server.start_server` (a background thread) and
:func:`crowd_platform.api.server.api_addresses` (URLs for the demo's summary).
"""
