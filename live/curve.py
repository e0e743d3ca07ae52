"""An authenticated edge: ZeroMQ CURVE key files, and the framing's handshake (live/framing.py: the same
Curve25519 keys and crypto_box CURVE uses), with the client keys the edge admits checked before any
request is read, and every later message sealed both ways.

`testbed curve-keys OUT_DIR` makes the key material: the edge's pair (`edge.key`, `edge.key_secret`), a
client's pair (`client.key`, `client.key_secret`) and `clients/`, the folder of client public keys the
edge admits (copy more `*.key` files there to admit more clients). The edge takes its secret file and
that folder (`testbed edge --curve-secret edge.key_secret --curve-clients clients/`); a client takes
the edge's public key and its own secret file (`testbed live ... --edge tcp://HOST:PORT --edge-key
edge.key --client-key client.key_secret`). A client without keys, with keys the edge does not admit, or
with the wrong edge's key fails its handshake, and the client says so in one line. Keys
stay where the user keeps them: nothing here writes them into a results folder.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from testbed.errors import ConfigError


@dataclass(frozen=True)
class ServerCurve:
    """The edge's CURVE keys and the folder of client public keys it admits."""

    public: bytes
    secret: bytes
    clients_dir: Path


@dataclass(frozen=True)
class ClientCurve:
    """A client's CURVE keys and the edge's public key it expects."""

    server_public: bytes
    public: bytes
    secret: bytes


def make_keys(out: Path) -> dict[str, Path]:
    """Write an edge key pair, a client key pair and the edge's admitted-clients folder into `out`; secret
    files are readable by their owner only. Refuses to overwrite existing keys."""
    import zmq.auth

    names = ("edge.key", "edge.key_secret", "client.key", "client.key_secret")
    if any((out / n).exists() for n in names):
        raise ConfigError("curve-keys", f"{out} already holds keys; remove them first or pick another folder")
    out.mkdir(parents=True, exist_ok=True)
    for who in ("edge", "client"):
        zmq.auth.create_certificates(out, who)
        os.chmod(out / f"{who}.key_secret", 0o600)
    clients = out / "clients"
    clients.mkdir(exist_ok=True)
    shutil.copy(out / "client.key", clients / "client.key")
    return {"edge_public": out / "edge.key", "edge_secret": out / "edge.key_secret",
            "client_public": out / "client.key", "client_secret": out / "client.key_secret", "clients": clients}


def _load(path: Path, flag: str, secret: bool) -> tuple[bytes, bytes | None]:
    import zmq.auth

    if not path.is_file():
        raise ConfigError(flag, f"no key file {path} (make keys with: testbed curve-keys OUT_DIR)")
    try:
        public, private = zmq.auth.load_certificate(path)
    except (ValueError, OSError, UnicodeDecodeError) as exc:
        raise ConfigError(flag, f"{path} is not a ZeroMQ CURVE key file ({exc})") from None
    if secret and private is None:
        raise ConfigError(flag, f"{path} holds a public key only; give the .key_secret file")
    return public, private


def server_curve(secret_file: Path, clients_dir: Path) -> ServerCurve:
    """The edge's keys (its `.key_secret` file) and the folder of admitted client public keys."""
    public, secret = _load(secret_file, "--curve-secret", True)
    if not clients_dir.is_dir() or not any(clients_dir.glob("*.key")):
        raise ConfigError("--curve-clients", f"{clients_dir} holds no client public keys (*.key)")
    assert secret is not None
    return ServerCurve(public, secret, clients_dir)


def client_curve(edge_key: Path, client_secret: Path) -> ClientCurve:
    """A client's keys (its `.key_secret` file) and the edge's public key (`edge.key`)."""
    server_public, _ = _load(edge_key, "--edge-key", False)
    public, secret = _load(client_secret, "--client-key", True)
    assert secret is not None
    return ClientCurve(server_public, public, secret)
