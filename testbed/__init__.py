"""Shared core of the device-edge collaborative VLM testbed.

Pure and importable anywhere: no SimPy, no ZeroMQ, no sockets, no clocks. Only `sim/` and
`live/` interpret the effects that policies here yield.
"""

__version__ = "0.1.0"
