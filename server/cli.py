"""Server commands (being built: see issue 4)."""

import typer


def register(app: typer.Typer) -> None:
    """Server commands are added by the server package."""
