"""`crowd-platform serve [--host 127.0.0.1] [--port 8765]`: the read-only published API and the
operations map page (docs/api.md). Loopback unless told otherwise."""

from __future__ import annotations

import argparse
import sys

from crowd_platform.cli import CliError


def _serve(args: argparse.Namespace) -> int:
    from crowd_platform.api.server import serve
    from crowd_platform.common.settings import get_settings

    settings = get_settings()
    if not settings.warehouse_path.exists():
        raise CliError(f"no warehouse at {settings.warehouse_path} (set CROWD_HOME or run the pipeline first)")
    if args.port < 0 or args.port > 65535:
        raise CliError("--port must be 0..65535")
    if args.refresh_interval <= 0:
        raise CliError("--refresh-interval must be positive")
    if args.host not in ("127.0.0.1", "::1", "localhost"):
        print(f"warning: serving on {args.host}, not loopback: put TLS in front (docs/api.md)", file=sys.stderr)
    try:
        serve(settings, args.host, args.port, refresh_interval_s=args.refresh_interval, log_level=args.log_level,
              announce=lambda line: print(line, flush=True))
    except OSError as error:
        raise CliError(f"cannot listen on {args.host}:{args.port} ({error.strerror})") from None
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("serve", help="read-only published API and operations map (loopback by default)",
                                   description="Serve the published datasets (k-anonymised density, alerts, indicators) "
                                               "over HTTP with bearer tokens (`crowd-platform tokens`), from an in-memory "
                                               "copy refreshed when the warehouse changes. See docs/api.md.")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8765, help="port (default 8765; 0 = a free port, printed)")
    parser.add_argument("--refresh-interval", type=float, default=2.0,
                        help="seconds between checks of the warehouse file for changes (default 2)")
    parser.add_argument("--log-level", default="warning", choices=["critical", "error", "warning", "info", "debug"])
    parser.set_defaults(handler=_serve)
