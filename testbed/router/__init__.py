"""Routers: each computes a score, and one rule (score >= tau_route: answer on the device) turns it
into a choice. Calibration (temperature scaling, ECE, reliability bins, calibration files),
threshold picking for a target local share or accuracy, and seed 002's input signals and
input-aware router."""
