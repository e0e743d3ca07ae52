"""Workload generators (the calibrated synthetic workload used until live traces exist)."""
