"""Models: vision encoders (encoder.py), text tokenizers (text.py) and the small/large VLM pair that
shares one encoder (pair.py). Importing this package loads no torch; its modules do."""

PRESETS = ("tiny", "real-size", "pocket")
"""The model pairs the testbed builds by name; anything else is a model-pair folder."""
