"""Shared core of the device-edge collaborative VLM testbed.

Pure and importable anywhere: no SimPy, no ZeroMQ, no sockets, no clocks. Only `testbed.sim` and
`testbed.live` interpret the effects that policies here yield.

The interpreters and the command line are subpackages (testbed.sim, testbed.live, testbed.cli); in
the repository they are the top-level folders sim/, live/ and cli/, linked in here.
"""

__version__ = "0.1.0"
