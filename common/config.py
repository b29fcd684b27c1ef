"""One config style for edge and server: a strict base model, one YAML loader, one secrets convention.

- **Strict.** Every model forbids unknown keys and is frozen: a typo in a field name at a gate
  fails loudly at start-up (`--validate-config`) instead of silently leaving a default in place.
  A key that was renamed is an error that names the new key (`StrictModel.moved`).
- **One loader, one error format.** `load_config` reads YAML and validates it; every problem
  comes back as one `ConfigError` listing each invalid field with its dotted path.
- **Secrets are named, never written.** A config names the environment variable that holds a
  password or token (`*_env` keys); the file itself can be shared, committed and logged. The
  broker password is `GATEWATCH_MQTT_PASSWORD` unless `mqtt.password_env` names another variable,
  which is what the shipped systemd units and provisioning's env files provide.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from common.errors import ConfigError

M = TypeVar("M", bound=BaseModel)

#: the variable both systemd units (deploy/) load from their 0600 env file
DEFAULT_PASSWORD_ENV = "GATEWATCH_MQTT_PASSWORD"


class StrictModel(BaseModel):
    """Base of every config model: unknown keys are errors, values are frozen once validated."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: keys an older config may still carry -> what to write instead (the error says so)
    moved: ClassVar[dict[str, str]] = {}

    @model_validator(mode="before")
    @classmethod
    def _moved_keys(cls, data: Any) -> Any:
        if isinstance(data, dict):
            old = [key for key in cls.moved if key in data]
            if old:
                raise ValueError("; ".join(f"{key} is no longer read: {cls.moved[key]}" for key in old))
        return data


def read_yaml(path: Path) -> Any:
    """The parsed YAML of a config file; an unreadable or unparsable file is a ConfigError."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError("config file not found", str(path)) from None
    except OSError as exc:
        raise ConfigError(f"cannot read the config: {exc.strerror or exc}", str(path)) from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"not valid YAML: {str(exc).splitlines()[0]}", str(path)) from None


def validate_config(model: type[M], raw: Any, source: str | None = None) -> M:
    """`raw` (parsed YAML, or a dict built in code) as `model`; an empty file counts as `{}`."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"expected a mapping at the top level, got {type(raw).__name__}", source)
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError.from_validation(exc, source) from None


def load_config(model: type[M], path: Path | str) -> M:
    """Read and validate a config file."""
    path = Path(path)
    return validate_config(model, read_yaml(path), str(path))


def secret_from_env(var: str | None, what: str, *, required: bool = True) -> str | None:
    """The secret in the environment variable a config names; `what` is the key that names it.

    A named but unset variable is a ConfigError when `required` (a server must not start without
    its password), else None: an edge unit keeps counting into its outbox and says so instead.
    """
    if var is None:
        return None
    value = os.environ.get(var)
    if value is None and required:
        raise ConfigError(f"{what}: environment variable {var} is not set")
    return value


class MqttConnection(StrictModel):
    """How to reach the broker and log in: the part of `mqtt` that edge and server share."""

    moved: ClassVar[dict[str, str]] = {
        "password": "a password is never written in the config: put it in an environment variable "
        f"and name that with password_env (default {DEFAULT_PASSWORD_ENV})",
        "tls_ca": "renamed to tls_ca_file",
        "tls_cert": "renamed to tls_cert_file",
        "tls_key": "renamed to tls_key_file",
    }

    host: str = Field("127.0.0.1", title="Broker host", description="broker name or address")
    port: int = Field(1883, ge=1, le=65535, title="Broker port", description="broker TCP port (8883 is usual with TLS)")
    username: str | None = Field(
        None, title="Username", description="broker user; the password comes from password_env"
    )
    password_env: str | None = Field(
        DEFAULT_PASSWORD_ENV,
        title="Password env var",
        description="environment variable with the broker password (read only with a username; never logged)",
    )
    tls_ca_file: Path | None = Field(
        None, title="CA certificate", description="PEM file of the CA that signed the broker's certificate; enables TLS"
    )
    tls_cert_file: Path | None = Field(
        None, title="Client certificate", description="PEM file, for brokers that require client certificates"
    )
    tls_key_file: Path | None = Field(None, title="Client key", description="PEM key of the client certificate")
    keepalive_s: int = Field(
        30, ge=5, le=3600, title="Keepalive (s)",
        description="MQTT keepalive; a dead link is noticed after about 1.5x this",
    )

    def password(self, *, required: bool) -> str | None:
        """The broker password from the environment (see `secret_from_env` for `required`)."""
        return secret_from_env(self.password_env, "mqtt.password_env", required=required)


class MetricsConfig(StrictModel):
    """Where a process serves Prometheus metrics (`GET /metrics`, common/metrics.py says why off by default)."""

    enabled: bool = Field(
        False, title="Serve /metrics",
        description="serve Prometheus metrics; off by default (a listener is a port to firewall and can clash)",
    )
    host: str = Field(
        "127.0.0.1", min_length=1, title="Listen address",
        description="address to listen on; loopback by default, 0.0.0.0 or a LAN address to be scraped from afar",
    )
    port: int = Field(9731, ge=1, le=65535, title="Listen port", description="TCP port of /metrics")
