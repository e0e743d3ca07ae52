"""Confidence calibration and routers: each router returns a score, policies apply thresholds."""
