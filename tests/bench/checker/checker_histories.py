"""Write small histories by hand: one tuple per record, index and time filled in."""

from __future__ import annotations

from typing import Any

from lockbench.history import Op

MS = 1_000_000


def history(*records: tuple[Any, ...], step_ns: int = MS) -> list[Op]:
    """Records are (process, type, f, key, value[, extra fields dict]); time = index * step."""
    ops: list[Op] = []
    for index, record in enumerate(records):
        process, typ, f, key, value, *rest = record
        extra: dict[str, Any] = dict(rest[0]) if rest else {}
        time = extra.pop("time", index * step_ns)
        ops.append(
            Op(
                index=index,
                time=time,
                process=process,
                type=typ,
                f=f,
                key=key,
                value=value,
                session=extra.pop("session", None),
                error=extra.pop("error", None),
                extra=extra,
            )
        )
    return ops
