"""Video tokenization: frame samplers over container metadata, decoding cost model."""
