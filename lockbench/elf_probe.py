"""Says, for each program named, whether a preload library can move the clock it reads.

Runs on a node (stdlib only; the bench sends it as ``python3 -c``) and prints one JSON list, an
object per program: ``program`` (as named), ``path`` (resolved through PATH and ``#!`` lines),
``kind`` and ``detail``. Kinds:

- ``dynamic``: an ELF program with a program interpreter (PT_INTERP) and no Go runtime: it reads
  the clock through libc, which a preload library replaces;
- ``go``: Go build info or a Go build id in the file: Go reads the clock through the vDSO itself,
  dynamically linked (cgo) or not, so no preload library moves it;
- ``static``: no program interpreter: nothing is ever preloaded into it;
- ``missing`` (not found), ``not-elf`` (neither ELF nor a ``#!`` script we can follow).

Usage: python3 elf_probe.py PROGRAM...
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import sys

PT_INTERP = 3
GO_SECTIONS = (".go.buildinfo", ".note.go.buildid", ".gopclntab")
GO_BUILDINFO_MAGIC = b"\xff Go buildinf:"
# A Go binary without section headers still carries its build info near the start of its data.
SCAN_LIMIT = 256 * 1024 * 1024
MAX_SHEBANG_HOPS = 4


def resolve(program: str) -> str | None:
    if "/" in program:
        return program if os.path.exists(program) else None
    return shutil.which(program)


def shebang(path: str) -> list[str] | None:
    """The interpreter command of a ``#!`` script, or None."""
    with open(path, "rb") as fh:
        first = fh.readline(512)
    if not first.startswith(b"#!"):
        return None
    words = first[2:].decode("utf-8", "replace").split()
    if words and os.path.basename(words[0]) == "env":
        words = [w for w in words[1:] if not w.startswith("-") and "=" not in w]
    return words or None


def section_names(data: bytes, is64: bool, endian: str) -> set[str]:
    if is64:
        shoff, shentsize, shnum, shstrndx = (
            struct.unpack_from(endian + "Q", data, 0x28)[0],
            *struct.unpack_from(endian + "HHH", data, 0x3A),
        )
    else:
        shoff, shentsize, shnum, shstrndx = (
            struct.unpack_from(endian + "I", data, 0x20)[0],
            *struct.unpack_from(endian + "HHH", data, 0x2E),
        )
    if shoff == 0 or shnum == 0 or shstrndx >= shnum:
        return set()

    def header(index: int) -> tuple[int, int, int]:
        base = shoff + index * shentsize
        if is64:
            name, _type, _flags, _addr, offset, size = struct.unpack_from(
                endian + "IIQQQQ", data, base
            )
        else:
            name, _type, _flags, _addr, offset, size = struct.unpack_from(
                endian + "IIIIII", data, base
            )
        return name, offset, size

    _, strings_offset, strings_size = header(shstrndx)
    strings = data[strings_offset : strings_offset + strings_size]
    names = set()
    for index in range(shnum):
        name = header(index)[0]
        end = strings.find(b"\0", name)
        names.add(strings[name:end].decode("ascii", "replace"))
    return names


def has_interpreter(data: bytes, is64: bool, endian: str) -> bool:
    if is64:
        phoff = struct.unpack_from(endian + "Q", data, 0x20)[0]
        phentsize, phnum = struct.unpack_from(endian + "HH", data, 0x36)
    else:
        phoff = struct.unpack_from(endian + "I", data, 0x1C)[0]
        phentsize, phnum = struct.unpack_from(endian + "HH", data, 0x2A)
    return any(
        struct.unpack_from(endian + "I", data, phoff + i * phentsize)[0] == PT_INTERP
        for i in range(phnum)
    )


def classify_elf(path: str) -> tuple[str, str] | None:
    """(kind, detail) for an ELF file; None if it is not one."""
    with open(path, "rb") as fh:
        data = fh.read(SCAN_LIMIT)
    if data[:4] != b"\x7fELF":
        return None
    is64 = data[4] == 2
    endian = "<" if data[5] == 1 else ">"
    go = sorted(set(GO_SECTIONS) & section_names(data, is64, endian))
    if go or GO_BUILDINFO_MAGIC in data:
        found = ", ".join(go) if go else "Go build info"
        return "go", f"a Go program ({found}): Go reads the clock through the vDSO, not libc"
    if not has_interpreter(data, is64, endian):
        return "static", "statically linked (no program interpreter): nothing can be preloaded"
    return "dynamic", "dynamically linked: reads the clock through libc"


def inspect(program: str) -> dict[str, str | None]:
    path = resolve(program)
    for _ in range(MAX_SHEBANG_HOPS):
        if path is None:
            return {"program": program, "path": None, "kind": "missing", "detail": "not found"}
        try:
            found = classify_elf(path)
            interpreter = None if found is not None else shebang(path)
        except OSError as exc:
            return {"program": program, "path": path, "kind": "missing", "detail": str(exc)}
        if found is not None:
            kind, detail = found
            return {"program": program, "path": path, "kind": kind, "detail": detail}
        if interpreter is None:
            break
        path = resolve(interpreter[0])
    return {"program": program, "path": path, "kind": "not-elf", "detail": "not an ELF program"}


def main(argv: list[str]) -> int:
    print(json.dumps([inspect(program) for program in argv]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
