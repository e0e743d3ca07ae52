"""Collaboration policies, each a sans-I/O generator of effects (see effects.py)."""
