"""Lost updates on the fenced counter: the final value against the acknowledged increments.

The counter workload increments inside critical sections: each accepted ``res-write`` writes the
value it read plus one. So with ``ok`` accepted writes and ``info`` writes that may have landed,
the final value must lie in ``[initial + ok, initial + ok + info]``. Below means two holders wrote
on top of the same read (an update was lost); above means a write the history never acknowledged.
"""

from __future__ import annotations

from typing import Any

from lockbench.checks import Anomaly, CheckResult
from lockbench.history import Call, PairedHistory
from lockbench.options import CheckOptions


def _accepted(call: Call) -> bool:
    value = call.completion.value if call.completion is not None else None
    return not (isinstance(value, dict) and value.get("accepted") is False)


def _final_read_anomaly(kind: str, explanation: str, final_call: Call) -> Anomaly:
    assert final_call.completion is not None
    return Anomaly(
        kind=kind,
        explanation=explanation,
        op_indices=(final_call.invoke.index, final_call.completion.index),
        key=final_call.invoke.key,
        processes=(final_call.process,),
        time_start=final_call.invoke.time,
        time_end=final_call.completion.time,
    )


class LostUpdatesChecker:
    """``lost-updates``: per key, the ``final-read`` value against acknowledged res-writes."""

    name = "lost-updates"
    # valid needs the final read that succeeded (bench/checking.py, require_evidence)
    requires = ("final-read",)

    def check(self, history: PairedHistory, opts: CheckOptions) -> CheckResult:
        acknowledged: dict[str | None, int] = {}
        maybe: dict[str | None, int] = {}
        finals: dict[str | None, Call] = {}
        for call in history.calls:
            key = call.invoke.key
            if call.invoke.f == "res-write":
                if call.outcome == "ok" and _accepted(call):
                    acknowledged[key] = acknowledged.get(key, 0) + 1
                elif call.outcome in ("info", None):
                    maybe[key] = maybe.get(key, 0) + 1
            elif call.invoke.f == "final-read" and call.outcome == "ok":
                finals[key] = call
        keys = sorted(set(acknowledged) | set(maybe), key=str)
        anomalies: list[Anomaly] = []
        missing: list[str] = []
        per_key: dict[str, Any] = {}
        for key in keys:
            final_call = finals.get(key)
            final = final_call.completion.value if final_call and final_call.completion else None
            if isinstance(final, dict):
                final = final.get("value")
            if final_call is None or not isinstance(final, int):
                missing.append(str(key))
                continue
            assert final_call.completion is not None
            low = opts.counter_initial + acknowledged.get(key, 0)
            high = low + maybe.get(key, 0)
            per_key[str(key)] = {
                "final": final,
                "acknowledged": low - opts.counter_initial,
                "maybe": maybe.get(key, 0),
            }
            if final < low:
                anomalies.append(
                    _final_read_anomaly(
                        "lost-update",
                        f"{low - opts.counter_initial} increments of {key!r} were acknowledged "
                        f"but the final value is {final}: {low - final} updates were lost (two "
                        "holders wrote on top of the same read)",
                        final_call,
                    )
                )
            elif final > high:
                anomalies.append(
                    _final_read_anomaly(
                        "phantom-update",
                        f"the final value of {key!r} is {final}, above the {high} that the "
                        "acknowledged and indeterminate increments allow",
                        final_call,
                    )
                )
        stats = {"keys": per_key, "keys_without_final_read": missing}
        if anomalies:
            return CheckResult(self.name, "invalid", anomalies=tuple(anomalies), stats=stats)
        if missing:
            return CheckResult(
                self.name,
                "unknown",
                stats=stats,
                reason=f"no successful final-read for {', '.join(missing)}; cannot count updates",
            )
        return CheckResult(self.name, "valid", stats=stats)
