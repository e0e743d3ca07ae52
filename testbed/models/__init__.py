"""Models: vision encoders (encoder.py), text tokenizers (text.py) and the small/large VLM pair that
shares one encoder (pair.py). Importing this package loads no torch; its modules do."""
