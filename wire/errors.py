"""Errors raised while reading the wire contract."""

from common.errors import GatewatchError


class WireError(GatewatchError, ValueError):
    """A payload or topic that does not follow the contract.

    `reason` is a short, stable machine-readable code (e.g. ``bad_json``, ``unknown_schema``)
    so the server can count rejections by reason without parsing free text. Still a `ValueError`,
    as pydantic validators and callers that predate the project root expect.
    """

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
