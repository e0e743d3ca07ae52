"""An authenticated edge (CURVE key files, the framing's handshake and sealed records, live/framing.py): an
admitted client is served; a client without keys, with keys the edge does not admit, or with the wrong
edge's key is refused at the handshake and told so in one line."""

from __future__ import annotations

import time

import pytest

from testbed.cli.main import main
from testbed.live.client import EdgeClient
from testbed.live.curve import client_curve, make_keys, server_curve
from testbed.live.edge_server import EdgeServer
from testbed.live.errors import EdgeUnavailable
from testbed.live.handlers import echo
from testbed.errors import ConfigError


TIMEOUT_S = 20.0
"""The clients' timeout: a refusal must come well before it (a timeout would say "timeout", not "refused")."""


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    return make_keys(tmp_path_factory.mktemp("curve"))


def test_only_admitted_clients_are_served(keys, tmp_path):
    other = make_keys(tmp_path / "other")  # a well-formed pair the edge never admitted
    curve = server_curve(keys["edge_secret"], keys["clients"])
    with EdgeServer("tcp://127.0.0.1:*", echo, curve=curve).start() as server:
        with EdgeClient(server.endpoint, curve=client_curve(keys["edge_public"], keys["client_secret"])) as ok:
            assert ok.request({"x": 1}, timeout_s=10.0).meta["x"] == 1
        # no keys, keys the edge does not admit, the wrong edge's key
        for curve_of in (None, client_curve(keys["edge_public"], other["client_secret"]),
                         client_curve(other["edge_public"], keys["client_secret"])):
            with EdgeClient(server.endpoint, curve=curve_of) as client:
                t0 = time.monotonic()
                with pytest.raises(EdgeUnavailable) as err:
                    client.request({"x": 1}, timeout_s=TIMEOUT_S)
                message = str(err.value)
                assert "\n" not in message
                assert err.value.reason == "refused" and "refused this client" in message, message
                assert time.monotonic() - t0 < TIMEOUT_S / 2  # said at the handshake, long before the timeout


def test_a_client_with_keys_against_an_edge_without_curve_is_refused(keys, caplog):
    """...and the edge's log says so in one line, as the client hears it."""
    caplog.set_level("WARNING", logger="testbed.live.edge_server")
    with EdgeServer("tcp://127.0.0.1:*", echo).start() as server:
        with EdgeClient(server.endpoint) as plain:  # loopback runs without keys keep working
            assert plain.request({"x": 2}, timeout_s=10.0).meta["x"] == 2
        with EdgeClient(server.endpoint, curve=client_curve(keys["edge_public"], keys["client_secret"])) as client:
            with pytest.raises(EdgeUnavailable) as err:
                client.request({"x": 1}, timeout_s=20.0)
            assert err.value.reason == "refused"
        assert server.counts["refused"] == 1
    refusals = [r.getMessage() for r in caplog.records if "refused a connection" in r.getMessage()]
    assert refusals == ["edge: refused a connection: this edge does not use CURVE; connect without keys"]


def test_key_files_are_checked_in_one_line(keys, tmp_path, capsys):
    with pytest.raises(ConfigError, match="holds a public key only"):
        server_curve(keys["edge_public"], keys["clients"])
    with pytest.raises(ConfigError, match="no client public keys"):
        server_curve(keys["edge_secret"], tmp_path)
    (tmp_path / "junk.key_secret").write_text("not a key\n")
    with pytest.raises(ConfigError, match="not a ZeroMQ CURVE key file"):
        client_curve(keys["edge_public"], tmp_path / "junk.key_secret")
    assert main(["curve-keys", str(keys["edge_public"].parent)]) == 2  # never overwrites keys
    assert "already holds keys" in capsys.readouterr().err
    assert (keys["edge_secret"].stat().st_mode & 0o777) == 0o600


def test_the_command_line_wants_keys_in_pairs(keys, capsys):
    assert main(["live", "default", "--edge-key", str(keys["edge_public"]), "--client-key",
                 str(keys["client_secret"])]) == 2  # keys are for an edge you started: --edge
    assert "--edge-key" in capsys.readouterr().err
    assert main(["edge", "--bind", "tcp://127.0.0.1:*", "--curve-secret", str(keys["edge_secret"])]) == 2
    assert "together" in capsys.readouterr().err


def test_sealed_records_open_only_with_the_pair_and_a_replayed_ready_fails(keys):
    from testbed.live import framing
    from testbed.live.curve import client_curve

    c = client_curve(keys["edge_public"], keys["client_secret"])
    edge = server_curve(keys["edge_secret"], keys["clients"])
    at_edge = framing.Sealer(framing.raw_key(edge.secret), framing.raw_key(c.public))
    at_client = framing.Sealer(framing.raw_key(c.secret), framing.raw_key(c.server_public))
    sealed = at_client.seal(b"tokens")
    assert b"tokens" not in sealed and at_edge.open(sealed) == b"tokens"
    forged = bytearray(sealed)
    forged[-1] ^= 1
    with pytest.raises(framing.FramingError, match="does not open"):
        at_edge.open(forged)
    body, cookie = framing.welcome(at_edge)
    ready = framing.answer_welcome(at_client, body)
    assert ready is not None and framing.ready_matches(at_edge, ready, cookie)
    _, fresh = framing.welcome(at_edge)  # the next connection's cookie: a recorded READY does not answer it
    assert not framing.ready_matches(at_edge, ready, fresh)
