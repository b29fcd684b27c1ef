"""`gatewatch` command: edge commands (replay, eval, bench, edge) and server commands (server).

The edge and server never import each other; only this thin entry point sees both, and each
side registers its own commands so heavy imports (torch, ultralytics) stay inside commands.
"""

from __future__ import annotations

import typer

from edge.cli import register as register_edge
from gatewatch.ops_cli import register as register_ops
from server.cli import register as register_server

app = typer.Typer(
    name="gatewatch",
    help="Vehicle counting, queues and congestion alerts for border gates.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
register_edge(app)
register_server(app)
register_ops(app)


def main() -> None:
    app()
