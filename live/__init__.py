"""Live interpreter: local and edge processes over ZeroMQ (later issues)."""
