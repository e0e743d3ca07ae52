"""Streams (seed 001, edgeVLM): a camera stream answered every frame by the small model, with a
large model answering selected frames late. Trace schema, synthetic workload, run records and metrics."""
