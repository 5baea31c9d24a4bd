"""A reader for the subset of EDN that Jepsen and Knossos histories use.

Maps, vectors, lists, sets, keywords, symbols, strings, characters, integers (with ``N``), floats,
ratios, nil, booleans, comments, ``#_`` discard and tagged literals (``#jepsen.history.Op{...}``,
``#inst "..."``: the tag is kept, the value read). Vectors and lists read as tuples and sets as
frozensets so they can be map keys. Errors name the line.

The tokenizer is one regular expression, so a 100,000-line history reads in seconds, not minutes.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any


class EdnError(ValueError):
    """Malformed EDN; ``line`` is 1-based."""

    def __init__(self, line: int, reason: str) -> None:
        super().__init__(f"line {line}: {reason}")
        self.line = line
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Keyword:
    name: str

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True, slots=True)
class Symbol:
    name: str

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True, slots=True)
class Tagged:
    """A tagged literal whose tag this reader does not interpret (``#inst``, ``#uuid``, ...)."""

    tag: str
    value: Any


_TOKEN = re.compile(
    r"""
    (?P<skip>[\s,]+|;[^\n]*)
  | (?P<string>"(?:[^"\\]|\\.)*")
  | (?P<open_set>\#\{)
  | (?P<discard>\#_)
  | (?P<tag>\#[A-Za-z][^\s,{}\[\]()"]*)
  | (?P<open>[{\[(])
  | (?P<close>[}\])])
  | (?P<char>\\(?:newline|space|tab|return|.))
  | (?P<atom>[^\s,{}\[\]()";]+)
  | (?P<bad>.)
    """,
    re.VERBOSE | re.DOTALL,
)
_INT = re.compile(r"[+-]?\d+N?")
_FLOAT = re.compile(r"[+-]?\d+(\.\d*)?([eE][+-]?\d+)?M?")
_RATIO = re.compile(r"[+-]?\d+/\d+")
_CLOSER = {"{": "}", "[": "]", "(": ")", "#{": "}"}
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\"}
_CHARS = {"newline": "\n", "space": " ", "tab": "\t", "return": "\r"}


def _atom(text: str) -> Any:
    if text == "nil":
        return None
    if text == "true":
        return True
    if text == "false":
        return False
    if text.startswith(":"):
        return Keyword(text[1:])
    if _INT.fullmatch(text):
        return int(text.rstrip("N"))
    if _FLOAT.fullmatch(text):
        return float(text.rstrip("M"))
    if _RATIO.fullmatch(text):
        num, den = text.split("/")
        return int(num) / int(den)
    return Symbol(text)


def _string(token: str) -> str:
    body = token[1:-1]
    if "\\" not in body:
        return body
    return re.sub(r"\\(u[0-9a-fA-F]{4}|.)", _unescape, body)


def _unescape(match: re.Match[str]) -> str:
    code = match.group(1)
    if code.startswith("u") and len(code) == 5:
        return chr(int(code[1:], 16))
    return _ESCAPES.get(code, code)


def read_forms(text: str) -> Iterator[tuple[int, Any]]:  # noqa: C901, PLR0912 - a tokenizer: one branch per token kind, in one loop
    """Yield (line, value) for each top-level form in ``text``."""
    newlines = [m.start() for m in re.finditer("\n", text)]

    def line_of(pos: int) -> int:
        return bisect.bisect_right(newlines, pos - 1) + 1 if newlines else 1

    stack: list[tuple[str, list[Any], int]] = []  # (opener, items, start position)
    prefixes: list[tuple[str, int]] = []  # tags and discards, with the depth they wait at

    def finish(value: Any) -> tuple[bool, Any]:
        """Apply the tags and discards waiting at this depth; returns (keep, value)."""
        depth = len(stack)
        while prefixes and prefixes[-1][1] == depth:
            tag = prefixes.pop()[0]
            if tag == "#_":
                return False, None
            if not tag.startswith("#jepsen"):  # Jepsen's record tags just wrap a map
                value = Tagged(tag[1:], value)
        return True, value

    for m in _TOKEN.finditer(text):
        kind = m.lastgroup
        token = m.group()
        pos = m.start()
        if kind == "skip":
            continue
        if kind == "bad":
            raise EdnError(line_of(pos), f"unexpected character {token!r} (unterminated string?)")
        if kind in ("open", "open_set"):
            stack.append((token, [], pos))
            continue
        if kind in ("tag", "discard"):
            prefixes.append((token, len(stack)))
            continue
        if kind == "close":
            if not stack:
                raise EdnError(line_of(pos), f"unmatched {token!r}")
            opener, items, start = stack.pop()
            if _CLOSER[opener] != token:
                raise EdnError(
                    line_of(pos), f"{opener!r} opened on line {line_of(start)} closed by {token!r}"
                )
            value = _collection(opener, items, line_of(start))
        elif kind == "string":
            value = _string(token)
        elif kind == "char":
            value = _CHARS.get(token[1:], token[1:])
        else:
            value = _atom(token)
        if kind != "close":
            start = pos
        keep, value = finish(value)
        if not keep:
            continue
        if stack:
            stack[-1][1].append(value)
        else:
            yield line_of(start), value
    if stack:
        opener, _, start = stack[-1]
        raise EdnError(line_of(start), f"{opener!r} is never closed (truncated input?)")


def _collection(opener: str, items: list[Any], line: int) -> Any:
    try:
        if opener == "{":
            if len(items) % 2:
                raise EdnError(line, "a map needs an even number of forms")
            return dict(zip(items[::2], items[1::2], strict=True))
        if opener == "#{":
            return frozenset(items)
    except TypeError as exc:
        raise EdnError(line, f"unhashable map key or set member ({exc})") from exc
    return tuple(items)


def to_json(value: Any) -> Any:
    """EDN values as JSON values: keywords and symbols become their names, sets sorted lists."""
    if isinstance(value, Keyword | Symbol):
        return value.name
    if isinstance(value, tuple | list):
        return [to_json(v) for v in value]
    if isinstance(value, frozenset):
        return sorted((to_json(v) for v in value), key=repr)
    if isinstance(value, dict):
        return {str(to_json(k)): to_json(v) for k, v in value.items()}
    if isinstance(value, Tagged):
        return to_json(value.value)
    return value
