"""JSON on the hot paths (client frames, log commands): read with orjson when installed, else
the standard library, with the same results either way; always written by the standard library.

orjson reads our frames ~7x faster than ``json``, and every node reads every command and every
request or reply (docs/performance.md). Whatever orjson refuses (a lone surrogate, NaN, a BOM,
deep nesting) or could read differently (an integer beyond 64 bits, which it turns into a float)
is handed to the standard library, so the inputs accepted, the values decoded and every error
raised are the standard library's; a property test holds the two to that. Writing stays with the
standard library: orjson writes NaN and infinities as ``null``, which would turn a bad value
into a different valid one. A node without orjson (no package index) uses the standard library.
"""

from __future__ import annotations

import json
import re
from typing import Any

try:
    import orjson
except ImportError:  # pragma: no cover - exercised on nodes without the dependency
    orjson = None  # type: ignore[assignment]

# orjson reads an integer beyond 64 bits as a float where json keeps it exact (found by the
# property test); a run of 19 digits may be one, so such input goes to json.
_LONG_DIGIT_RUN = re.compile(rb"[0-9]{19}")
_ENCODE = json.JSONEncoder(separators=(",", ":")).encode
_DECODE = json.JSONDecoder().decode


def dumps(value: Any) -> bytes:
    """Compact, ASCII-escaped JSON bytes of ``value`` (any str encodes, even a lone surrogate)."""
    return _ENCODE(value).encode()


def loads(data: bytes) -> Any:
    """The value of UTF-8 JSON ``data``; raises ValueError (UnicodeDecodeError, JSONDecodeError)
    as ``json.loads(data.decode("utf-8"))`` does."""
    if orjson is not None and not _LONG_DIGIT_RUN.search(data):
        try:
            return orjson.loads(data)
        except ValueError:  # orjson.JSONDecodeError is a ValueError
            pass
    return _DECODE(data.decode("utf-8"))


def accelerated() -> bool:
    return orjson is not None
