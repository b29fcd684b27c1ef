"""Operations commands (provisioning, calibration, demo): being built for the deploy issue."""

import typer


def register(app: typer.Typer) -> None:
    """Adds nothing yet; the deploy work fills this in."""
