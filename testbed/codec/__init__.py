"""Vision-token codec: sizes on the wire (and, in later work, merging and the wire format)."""
