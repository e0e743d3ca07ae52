"""Vision-token codec: merging to a density (merge.py), the wire format (wire.py, layout.py) and the
size model the sim uses (size.py). Only wire.py and merge.py import torch."""
