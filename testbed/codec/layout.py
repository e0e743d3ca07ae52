"""The token message's fixed header layout (see wire.py), apart so that the size model can use
it without importing torch."""

from __future__ import annotations

import struct

MAGIC = b"VTOK"
VERSION = 2
HEADER = struct.Struct("<4sBBBBIIIQII")
"""magic, version, dtype, flags, reserved, frames, density, dim, payload bytes, text bytes, crc32."""
HEADER_BYTES = HEADER.size
FLAG_SHUFFLE = 1
