"""Live mode: the local node and the edge node over a real ZeroMQ link shaped with Linux tc.

Transport and link (this package so far; the live interpreter plugs into it):
  envelope     versioned msgpack header + binary payload frames; EnvelopeError on bad input
  framing      the link's own length-prefixed records on a raw TCP stream (oversize refused from the
               length), the CURVE-key handshake and sealed records
  edge_server  EdgeServer(bind, handler, max_queue): a ZeroMQ STREAM socket, a receive budget, a
               bounded queue, deadlines, health, clean SIGINT/SIGTERM shutdown; main(argv) /
               `python -m testbed.live.edge_server`; spawn_edge
  client       EdgeClient(endpoint): a connection per thread, per-request timeout, EdgeUnavailable
  shaping      ShapedLink(LinkSpec): netns + veth + tbf/htb (netem where present) or user space;
               probe, stale clean-up, trace-driven rates, self-check
  pacing       Pacer/UserLink: the user-space part of the link (delay, rate or trace, loss)
  handlers     model-free handlers (echo, probe) for the self-check, tests and benchmarks
  curve        CURVE key files and the keys an authenticated edge and its clients use
  soak         the transport soaked with many requests and faults (testbed soak)

Only live/ and sim/ touch clocks, sockets, processes and tc; nothing here is pickled.
"""
