"""Provisioning of broker accounts, TLS material and starter configs, into one state folder.

Every edge unit and every server gets its own MQTT account, its own random password and its own
client certificate, so one stolen Pi can be locked out alone (delete its `passwd` line and ACL
block, reload mosquitto) and so the broker's ACL can confine each unit to its own topics.

Layout of the state folder (keep it off git and back it up: it holds the CA key)::

    ca/ca.crt, ca/ca.key                          the gatewatch CA, created once
    broker/passwd, broker/acl                     for /etc/mosquitto/gatewatch/
    broker/tls/{ca.crt,server.crt,server.key}     for /etc/mosquitto/gatewatch/tls/
    units/<gate>/<unit>/unit.yaml, edge.env       for /etc/gatewatch/ on the Pi
    units/<gate>/<unit>/tls/{ca.crt,client.crt,client.key}
    servers/<name>/server.yaml, server.env, tls/ca.crt

Usernames are `<gate>.<unit>` for units: ids never contain a dot (wire.topics.ID_PATTERN), so
the name is unambiguous and can never collide with a server account, whose name is a plain id.
The ACL is explicit per account rather than mosquitto `pattern` lines: `%u` expands to the whole
username, which cannot be split into the gate and unit topic levels, and `%c` (client id) is
chosen by the client and so proves nothing.

Every step is idempotent: what exists and is still valid is kept, so running a command twice
changes nothing, and a half-finished run can simply be repeated. Passwords never reach a log,
a command line (mosquitto_passwd reads them from stdin) or stdout; they live only in 0600 files.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import os
import re
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import yaml

from common.config import load_config, validate_config
from common.errors import EXIT_USAGE, ConfigError, GatewatchError
from edge.config import HomeAssistantConfig, UnitConfig
from wire.errors import WireError
from wire.homeassistant import discovery_filter, lane_state_filter, node_id
from wire.summary import PROVINCE
from wire.topics import DEAD_LETTER, PREFIX, SERVER_HEALTH, UNIT_KINDS, TopicKind, check_id, server_claim

#: where the bundle files land on a Pi (install.sh copies them there); unit.yaml refers to them.
DEFAULT_UNIT_ETC = Path("/etc/gatewatch")
#: the NCNN export install.sh links here (see deploy/pi/install.sh).
DEFAULT_UNIT_MODEL = Path("/var/lib/gatewatch/models/yolov8n-vehicles-480_ncnn_model")
UNIT_PORT = 8883
SERVER_PORT = 8884
SERVER_PASSWORD_ENV = "GATEWATCH_MQTT_PASSWORD"  # as deploy/server/gatewatch-server.service expects
UNIT_PASSWORD_ENV = "GATEWATCH_MQTT_PASSWORD"
#: EnvironmentFile names of deploy/systemd/gatewatch-edge.service and deploy/server/gatewatch-server.service
UNIT_ENV_FILE = "edge.env"
SERVER_ENV_FILE = "server.env"
CA_DAYS = 3650
LEAF_DAYS = 825
#: reissue a leaf certificate that expires within this many seconds.
RENEW_BEFORE_S = 30 * 24 * 3600
PASSWORD_BYTES = 32


class ProvisionError(GatewatchError):
    """Provisioning cannot go on; the message is one line an operator can act on.

    A usage error (exit 2): provisioning stops only where the operator must fix an argument or
    the state folder (a tampered ACL block, a CA key missing from a restore, a missing tool)."""

    exit_code: ClassVar[int] = EXIT_USAGE


@dataclass
class Report:
    """What a command did, one line per file or account; never contains a secret."""

    lines: list[str] = field(default_factory=list)

    def add(self, changed: bool, what: str) -> None:
        self.lines.append(f"{'created' if changed else 'kept   '} {what}")

    @property
    def changed(self) -> bool:
        return any(line.startswith("created") for line in self.lines)


@dataclass(frozen=True)
class State:
    """Paths inside a state folder; nothing is created until a provision function runs."""

    root: Path

    @property
    def ca_crt(self) -> Path:
        return self.root / "ca" / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.root / "ca" / "ca.key"

    @property
    def broker(self) -> Path:
        return self.root / "broker"

    @property
    def passwd(self) -> Path:
        return self.broker / "passwd"

    @property
    def acl(self) -> Path:
        return self.broker / "acl"

    def unit_dir(self, gate: str, unit: str) -> Path:
        return self.root / "units" / gate / unit

    def server_dir(self, name: str) -> Path:
        return self.root / "servers" / name


# -- accounts and ACL ---------------------------------------------------------------------------


def unit_username(gate: str, unit: str) -> str:
    return f"{_id(gate, 'gate')}.{_id(unit, 'unit')}"


def unit_acl(gate: str, unit: str, homeassistant: HomeAssistantConfig | None = None) -> str:
    """A unit writes only its own four topic kinds, reads its gate's alerts, and reads (never
    writes) its own `stored` acknowledgement, on which it forgets its records.

    Not `<gate>/<unit>/#`: that would include `<gate>/<unit>/alert`, and since alerts are
    scoped by lane, a unit whose id equals a lane id could forge that lane's alert; and it would
    include `<gate>/<unit>/stored`, with which a unit could make itself forget unstored records.

    With Home Assistant discovery on (`homeassistant.enabled` in its unit.yaml), also its own
    discovery node and lane states (read too: it deletes strays it finds there) and Home
    Assistant's birth topic, read only. The node id is bound to (gate, unit) one-to-one
    (wire.homeassistant.node_id), so no unit can announce, or delete, another unit's entities.
    """
    user = unit_username(gate, unit)
    lines = [f"# unit {gate}/{unit}", f"user {user}"]
    lines += [f"topic write {PREFIX}/{gate}/{unit}/{kind.value}" for kind in sorted(UNIT_KINDS)]
    lines.append(f"topic read {PREFIX}/{gate}/+/{TopicKind.ALERT.value}")
    lines.append(f"topic read {PREFIX}/{gate}/{unit}/{TopicKind.STORED.value}")
    if homeassistant is not None and homeassistant.enabled:
        lines += [
            f"topic readwrite {discovery_filter(homeassistant.discovery_prefix, node_id(gate, unit))}",
            f"topic readwrite {lane_state_filter(gate, unit)}",
            f"topic read {homeassistant.status_topic}",
        ]
    return "\n".join(lines) + "\n"


def server_acl(name: str) -> str:
    """The server reads everything under the prefix and writes alerts, each unit's `stored`
    acknowledgement, dead letters, its health and the claim on its client id (its name)."""
    lines = [
        f"# server {name}",
        f"user {_id(name, 'server name')}",
        f"topic read {PREFIX}/#",
        f"topic write {PREFIX}/+/+/{TopicKind.ALERT.value}",
        f"topic write {PREFIX}/+/+/{TopicKind.STORED.value}",
        f"topic write {DEAD_LETTER}",
        f"topic write {SERVER_HEALTH}",
        f"topic write {server_claim(name)}",
        f"topic write {PROVINCE}/#",
    ]
    return "\n".join(lines) + "\n"


ACL_HEADER = """\
# gatewatch broker ACL, generated by `gatewatch provision-*` (deploy/mosquitto/README.md).
# One block per account; a topic not granted to an account is denied to it.
# Edit by re-running provisioning, not by hand: a block that differs from what provisioning
# would write makes the next run stop with an error instead of silently widening access.
"""


def ensure_acl_block(acl: Path, user: str, block: str, replaces: Sequence[str] = ()) -> bool:
    """Append `block` unless the user already has one; an existing block must match exactly, or be
    one of `replaces`: another block provisioning itself writes for this account (a unit with Home
    Assistant discovery turned off, before it is turned on), which is then replaced."""
    text = acl.read_text() if acl.exists() else ACL_HEADER
    blocks = _acl_blocks(text)
    if user in blocks:
        old = blocks[user]
        if old.strip() == block.strip():
            return False
        if old.strip() in {r.strip() for r in replaces} and text.count(old) == 1:
            _write(acl, text.replace(old, block.rstrip("\n") + "\n"), 0o644)
            return True
        raise ProvisionError(
            f"{acl}: the ACL block of {user} differs from what provisioning writes; "
            "remove that block and run again"
        )
    acl.parent.mkdir(parents=True, exist_ok=True)
    _write(acl, text.rstrip("\n") + "\n\n" + block, 0o644)
    return True


def _acl_blocks(text: str) -> dict[str, str]:
    """user -> its block (its comment line, `user` line and following `topic` lines)."""
    blocks: dict[str, str] = {}
    current: str | None = None
    comment = ""
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("user "):
            current = stripped.split(None, 1)[1]
            blocks[current] = comment + line + "\n"
        elif current is not None and stripped.startswith(("topic ", "pattern ")):
            blocks[current] += line + "\n"
        elif stripped.startswith("#"):
            comment = line + "\n"
            current = None
            continue
        else:
            current = None
        comment = ""
    return blocks


# -- passwords ----------------------------------------------------------------------------------


def ensure_password(
    env_file: Path, var: str, passwd: Path, user: str, rotate: bool = False
) -> bool:
    """Keep (or make) the account's password in `env_file` and its hash in the broker's `passwd`.

    Returns whether anything changed. The hash is checked against the kept password, so a
    password file restored from an older backup is noticed and the broker entry re-set.
    """
    password = None if rotate else _read_env_value(env_file, var)
    changed = False
    if password is None:
        password = secrets.token_urlsafe(PASSWORD_BYTES)
        env_file.parent.mkdir(parents=True, exist_ok=True)
        _write(env_file, f"{var}={password}\n", 0o600)
        changed = True
    if not _passwd_matches(passwd, user, password):
        set_mosquitto_password(passwd, user, password)
        changed = True
    return changed


def _read_env_value(env_file: Path, var: str) -> str | None:
    if not env_file.exists():
        return None
    for line in env_file.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() == var and value.strip():
            return value.strip()
    return None


def _passwd_matches(passwd: Path, user: str, password: str) -> bool:
    """Check a mosquitto 2.0 `$7$` (PBKDF2-SHA512) or `$6$` (salted SHA512) entry."""
    if not passwd.exists():
        return False
    for line in passwd.read_text().splitlines():
        name, sep, entry = line.partition(":")
        if not sep or name != user:
            continue
        parts = entry.split("$")
        try:
            if len(parts) == 5 and parts[1] == "7":
                salt, digest = base64.b64decode(parts[3]), base64.b64decode(parts[4])
                mine = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, int(parts[2]))
                return secrets.compare_digest(mine, digest)
            if len(parts) == 4 and parts[1] == "6":
                salt, digest = base64.b64decode(parts[2]), base64.b64decode(parts[3])
                return secrets.compare_digest(hashlib.sha512(password.encode() + salt).digest(), digest)
        except ValueError:
            return False
        return False
    return False


def set_mosquitto_password(passwd: Path, user: str, password: str) -> None:
    """Add or update an entry; the password goes through stdin, never the command line (ps)."""
    exe = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
    if not Path(exe).exists():
        raise ProvisionError("mosquitto_passwd not found (apt install mosquitto)")
    passwd.parent.mkdir(parents=True, exist_ok=True)
    args = [exe, str(passwd), user] if passwd.exists() else [exe, "-c", str(passwd), user]
    proc = subprocess.run(
        args, input=f"{password}\n{password}\n", capture_output=True, text=True, umask=0o077, check=False
    )
    if proc.returncode != 0:
        raise ProvisionError(f"mosquitto_passwd failed for {user}: {_last_line(proc.stderr or proc.stdout)}")
    passwd.chmod(0o600)


# -- TLS ----------------------------------------------------------------------------------------


def ensure_root(state: State) -> None:
    """Create the state folder private (0700), with a `.gitignore` of `*` inside: a state folder
    made inside a checkout can then never be committed with its keys and passwords."""
    if not state.root.exists():
        state.root.mkdir(parents=True, mode=0o700)
    ignore = state.root / ".gitignore"
    if not ignore.exists():
        _write(ignore, "# gatewatch provisioning state: keys and passwords, never commit\n*\n", 0o644)


def ensure_ca(state: State) -> bool:
    """Create the CA once. A CA certificate without its key is an error, never replaced silently:
    replacing it would invalidate every certificate already on the units."""
    ensure_root(state)
    if state.ca_crt.exists():
        if not state.ca_key.exists():
            raise ProvisionError(f"{state.ca_crt} exists but {state.ca_key} is missing; restore it from backup")
        return False
    state.ca_crt.parent.mkdir(mode=0o700, exist_ok=True)
    _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", str(state.ca_key))
    state.ca_key.chmod(0o600)
    _openssl(
        "req", "-x509", "-new", "-key", str(state.ca_key), "-sha256", "-days", str(CA_DAYS),
        "-subj", "/O=gatewatch/CN=gatewatch CA",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        "-addext", "subjectKeyIdentifier=hash",
        "-out", str(state.ca_crt),
    )
    state.ca_crt.chmod(0o644)
    return True


def ensure_leaf(
    state: State, cert: Path, key: Path, common_name: str, usage: str, sans: Sequence[str] = ()
) -> bool:
    """Issue a client or server certificate unless a valid one (right CA, names, not expiring) exists."""
    if cert.exists() and key.exists() and _leaf_ok(state, cert, key, sans):
        return False
    cert.parent.mkdir(parents=True, exist_ok=True)
    if not key.exists():
        _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", str(key))
    key.chmod(0o600)
    ext = [
        "[v3]",
        "basicConstraints=critical,CA:FALSE",
        "keyUsage=critical,digitalSignature,keyEncipherment",
        f"extendedKeyUsage={usage}",
        "subjectKeyIdentifier=hash",
        "authorityKeyIdentifier=keyid,issuer",
    ]
    if sans:
        ext.append("subjectAltName=" + ",".join(_san(s) for s in sans))
    with tempfile.TemporaryDirectory(prefix="gatewatch-provision-") as tmp:
        csr, extfile = Path(tmp) / "leaf.csr", Path(tmp) / "ext.cnf"
        extfile.write_text("\n".join(ext) + "\n")
        _openssl("req", "-new", "-key", str(key), "-subj", f"/O=gatewatch/CN={common_name}", "-out", str(csr))
        _openssl(
            "x509", "-req", "-in", str(csr), "-CA", str(state.ca_crt), "-CAkey", str(state.ca_key),
            "-set_serial", "0x" + secrets.token_hex(16), "-days", str(LEAF_DAYS), "-sha256",
            "-extfile", str(extfile), "-extensions", "v3", "-out", str(cert),
        )
    cert.chmod(0o644)
    return True


def _leaf_ok(state: State, cert: Path, key: Path, sans: Sequence[str]) -> bool:
    verify = _openssl_try("verify", "-CAfile", str(state.ca_crt), str(cert))
    fresh = _openssl_try("x509", "-in", str(cert), "-noout", "-checkend", str(RENEW_BEFORE_S))
    if verify is None or fresh is None:
        return False
    pub_cert = _openssl_try("x509", "-in", str(cert), "-noout", "-pubkey")
    pub_key = _openssl_try("pkey", "-in", str(key), "-pubout")
    if pub_cert is None or pub_cert != pub_key:
        return False
    if sans:
        text = _openssl_try("x509", "-in", str(cert), "-noout", "-ext", "subjectAltName") or ""
        have = set(re.findall(r"(?:DNS|IP Address):([^,\s]+)", text))
        if have != {s for s in sans}:
            return False
    return True


def _san(name: str) -> str:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return f"DNS:{name}"
    return f"IP:{name}"


def _copy_if_changed(src: Path, dst: Path, mode: int) -> bool:
    if dst.exists() and dst.read_bytes() == src.read_bytes():
        return False
    dst.parent.mkdir(parents=True, exist_ok=True)
    _write(dst, src.read_text(), mode)
    return True


def _openssl(*args: str) -> str:
    exe = shutil.which("openssl")
    if exe is None:
        raise ProvisionError("openssl not found (apt install openssl)")
    proc = subprocess.run([exe, *args], capture_output=True, text=True, umask=0o077, check=False)
    if proc.returncode != 0:
        raise ProvisionError(f"openssl {args[0]} failed: {_last_line(proc.stderr)}")
    return proc.stdout


def _openssl_try(*args: str) -> str | None:
    try:
        return _openssl(*args)
    except ProvisionError:
        return None


# -- the three commands -------------------------------------------------------------------------


def provision_broker(root: Path, hosts: Sequence[str]) -> Report:
    """CA, the broker's certificate for `hosts` (plus loopback, for the server's listener), and
    the password and ACL files mosquitto.conf names."""
    if not hosts:
        raise ProvisionError("give at least one --host: the name units use to reach the broker")
    for host in hosts:
        _host(host, "--host")
    state = State(root)
    report = Report()
    report.add(ensure_ca(state), str(state.ca_crt))
    tls = state.broker / "tls"
    names = list(dict.fromkeys([*hosts, "localhost", "127.0.0.1"]))
    report.add(ensure_leaf(state, tls / "server.crt", tls / "server.key", hosts[0], "serverAuth", names),
               f"{tls / 'server.crt'} for {', '.join(names)}")
    report.add(_copy_if_changed(state.ca_crt, tls / "ca.crt", 0o644), str(tls / "ca.crt"))
    if not state.acl.exists():
        state.broker.mkdir(parents=True, exist_ok=True)
        _write(state.acl, ACL_HEADER, 0o644)
        report.add(True, str(state.acl))
    else:
        report.add(False, str(state.acl))
    return report


@dataclass(frozen=True)
class UnitOptions:
    broker_host: str
    broker_port: int = UNIT_PORT
    source: str = "picamera"
    etc_dir: Path = DEFAULT_UNIT_ETC
    model_path: Path = DEFAULT_UNIT_MODEL
    rotate_password: bool = False
    #: a new unit's starter config turns Home Assistant discovery on (an existing unit.yaml decides)
    home_assistant: bool = False


def provision_unit(root: Path, gate: str, unit: str, opts: UnitOptions) -> Report:
    """Account, ACL block, client certificate and starter config of one edge unit.

    An existing unit.yaml is validated and kept, never overwritten: by then the installer has
    drawn the lanes in it.
    """
    state = State(root)
    user = unit_username(gate, unit)
    _host(opts.broker_host, "--broker-host")
    report = Report()
    report.add(ensure_ca(state), str(state.ca_crt))
    out = state.unit_dir(gate, unit)
    report.add(ensure_password(out / UNIT_ENV_FILE, UNIT_PASSWORD_ENV, state.passwd, user, opts.rotate_password),
               f"password of {user} ({out / UNIT_ENV_FILE}, {state.passwd})")
    ha = _unit_homeassistant(out / "unit.yaml", gate, unit, opts)
    block = unit_acl(gate, unit, ha)
    other = unit_acl(gate, unit, None if ha.enabled else ha.model_copy(update={"enabled": True}))
    report.add(ensure_acl_block(state.acl, user, block, replaces=[other]),
               f"ACL block of {user} ({state.acl}{', with Home Assistant discovery' if ha.enabled else ''})")
    tls = out / "tls"
    report.add(ensure_leaf(state, tls / "client.crt", tls / "client.key", user, "clientAuth"),
               str(tls / "client.crt"))
    report.add(_copy_if_changed(state.ca_crt, tls / "ca.crt", 0o644), str(tls / "ca.crt"))
    report.add(_ensure_unit_config(out / "unit.yaml", gate, unit, opts), str(out / "unit.yaml"))
    return report


def _unit_homeassistant(path: Path, gate: str, unit: str, opts: UnitOptions) -> HomeAssistantConfig:
    """Home Assistant settings the unit's ACL must allow: its unit.yaml's once it exists (the
    installer may turn discovery on later), else the starter config's."""
    if path.exists():
        try:
            return load_config(UnitConfig, path).homeassistant
        except ConfigError as exc:
            raise ProvisionError(_one_line(exc)) from None
    return HomeAssistantConfig(enabled=opts.home_assistant)


def starter_unit_config(gate: str, unit: str, opts: UnitOptions) -> dict[str, Any]:
    """A valid config with one placeholder lane across the middle; `gatewatch calibrate` then
    shows where it falls on the real camera image, and the installer edits it."""
    tls = opts.etc_dir / "tls"
    return {
        "gate": gate,
        "unit": unit,
        "source": parse_source(opts.source),
        "lanes": [{
            "id": starter_lane_id(unit),
            "line": {"a": [0.0, 0.6], "b": [1.0, 0.6], "band": 0.015},
            "directions": ["in", "out"],
            "queue_zone": [[0.0, 0.2], [1.0, 0.2], [1.0, 0.6], [0.0, 0.6]],
        }],
        "model": {"path": str(opts.model_path), "imgsz": 480},
        "mqtt": {
            "host": opts.broker_host,
            "port": opts.broker_port,
            "username": unit_username(gate, unit),
            "password_env": UNIT_PASSWORD_ENV,
            "tls_ca_file": str(tls / "ca.crt"),
            "tls_cert_file": str(tls / "client.crt"),
            "tls_key_file": str(tls / "client.key"),
        },
        "outbox": {"path": "/var/lib/gatewatch/outbox.sqlite3"},
        **({"homeassistant": {"enabled": True}} if opts.home_assistant else {}),
    }


def starter_lane_id(unit: str) -> str:
    """`<unit>-l1`: unique within the gate, because a lane belongs to one unit (the server refuses a
    unit's records for another unit's lane); a long unit id is cut and keeps a hash of the rest."""
    lane = f"{unit}-l1"
    if len(lane) <= 40:
        return lane
    return f"{unit[:28]}-{hashlib.sha256(unit.encode()).hexdigest()[:8]}-l1"


def parse_source(source: str) -> dict[str, Any]:
    """`picamera`, `usb:N`, `rtsp://...`/`http(s)://...`, or a file path."""
    if source == "picamera":
        return {"kind": "picamera"}
    if source.startswith("usb:"):
        try:
            return {"kind": "usb", "index": int(source[4:])}
        except ValueError:
            raise ProvisionError(f"--source {source!r}: expected usb:N with N a number") from None
    if re.match(r"^(rtsp|rtsps|http|https)://", source):
        return {"kind": "rtsp", "path": source}
    return {"kind": "file", "path": source}


UNIT_YAML_HEADER = """\
# gatewatch edge unit {gate}/{unit}, written by `gatewatch provision-unit`.
# The MQTT password is not here: systemd loads it from {etc}/edge.env (mqtt.password_env names the variable).
# {lane} is a placeholder: run `gatewatch calibrate --config {etc}/unit.yaml --out frame.png`,
# look at frame.png and move the line and queue zone onto the real lanes (docs/installer-guide.md).
# Lane ids are unique within the gate: a lane belongs to one unit. Declare the same lanes and
# directions in the server's validation.gates ({gate}: {{{unit}: {{{lane}: [in, out]}}}}).
"""


def _ensure_unit_config(path: Path, gate: str, unit: str, opts: UnitOptions) -> bool:
    if path.exists():
        try:
            existing = load_config(UnitConfig, path)
        except ConfigError as exc:
            raise ProvisionError(_one_line(exc)) from None
        if (existing.gate, existing.unit) != (gate, unit):
            raise ProvisionError(f"{path} is for {existing.gate}/{existing.unit}, not {gate}/{unit}")
        return False
    raw = starter_unit_config(gate, unit, opts)
    try:
        validate_config(UnitConfig, raw, "starter config")
    except ConfigError as exc:
        raise ProvisionError(_one_line(exc)) from None
    header = UNIT_YAML_HEADER.format(gate=gate, unit=unit, etc=opts.etc_dir, lane=starter_lane_id(unit))
    _write(path, header + yaml.safe_dump(raw, sort_keys=False, default_flow_style=None), 0o644)
    return True


@dataclass(frozen=True)
class ServerOptions:
    broker_host: str = "127.0.0.1"
    broker_port: int = SERVER_PORT
    etc_dir: Path = Path("/etc/gatewatch")
    rotate_password: bool = False


def provision_server(root: Path, name: str, opts: ServerOptions) -> Report:
    """Account and ACL block of a server, and an MQTT section for its config.

    Each server instance gets its own account: the broker replaces client ids by usernames
    (use_username_as_clientid), so two servers sharing an account would disconnect each other.
    """
    state = State(root)
    user = _id(name, "server name")
    _host(opts.broker_host, "--broker-host")
    report = Report()
    report.add(ensure_ca(state), str(state.ca_crt))
    out = state.server_dir(name)
    report.add(ensure_password(out / SERVER_ENV_FILE, SERVER_PASSWORD_ENV, state.passwd, user, opts.rotate_password),
               f"password of {user} ({out / SERVER_ENV_FILE}, {state.passwd})")
    report.add(ensure_acl_block(state.acl, user, server_acl(name)), f"ACL block of {user} ({state.acl})")
    report.add(_copy_if_changed(state.ca_crt, out / "tls" / "ca.crt", 0o644), str(out / "tls" / "ca.crt"))
    report.add(_ensure_server_config(out / "server.yaml", name, opts), str(out / "server.yaml"))
    return report


def starter_server_config(name: str, opts: ServerOptions) -> dict[str, Any]:
    return {
        "server_id": name,
        "mqtt": {
            "host": opts.broker_host,
            "port": opts.broker_port,
            "client_id": name,
            "username": name,
            "password_env": SERVER_PASSWORD_ENV,
            "tls_ca_file": str(opts.etc_dir / "tls" / "ca.crt"),
        },
        "validation": {"accept_unknown": True},
    }


def _ensure_server_config(path: Path, name: str, opts: ServerOptions) -> bool:
    if path.exists():
        return False
    raw = starter_server_config(name, opts)
    # Imported here: the unit commands must not depend on the server package being importable.
    from server.config import parse_config

    try:
        parse_config(raw)
    except ConfigError as exc:
        raise ProvisionError(f"starter server config is invalid: {_one_line(exc)}") from None
    header = (
        f"# gatewatch server {name}, written by `gatewatch provision-server`; extend it (influx, alerts).\n"
        f"# The MQTT password is not here: systemd loads {SERVER_PASSWORD_ENV} from {opts.etc_dir}/{SERVER_ENV_FILE}.\n"
        "# accept_unknown: any provisioned unit may publish, and its lanes are learned from its first records\n"
        "# and pinned (server-lanes.json beside the spool). Once the lanes are drawn, declare them instead:\n"
        "#   validation: {gates: {<gate>: {<unit>: {<lane>: [in, out]}}}}\n"
    )
    _write(path, header + yaml.safe_dump(raw, sort_keys=False, default_flow_style=None), 0o644)
    return True


# -- helpers ------------------------------------------------------------------------------------


def _id(value: str, what: str) -> str:
    try:
        return check_id(value, what)
    except WireError as exc:
        raise ProvisionError(str(exc)) from None


_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOST_RE = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})*$")


def _host(value: str, what: str) -> str:
    """A DNS name or an IP address: it goes into a certificate and a config, so no free text."""
    try:
        ipaddress.ip_address(value)
        return value
    except ValueError:
        pass
    if not _HOST_RE.match(value):
        raise ProvisionError(f"{what} {value!r} is not a host name or IP address")
    return value


def _write(path: Path, text: str, mode: int) -> None:
    """Write via a temp file and rename, created with its final mode (no window where a
    password file is world-readable, no half-written file after a crash)."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    os.fchmod(fd, mode)  # O_CREAT's mode is masked by umask and ignored for an existing file
    with os.fdopen(fd, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _one_line(exc: ConfigError) -> str:
    """A config error's lines joined, for a report that must stay one line."""
    return " / ".join(line.strip() for line in str(exc).splitlines())


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no output"
