"""The store's cost in interleaved rounds: ``run.py --store-rounds N``.

On a shared VM, throughput drifts between two variants measured one after the other
by more than the store costs: three runs of ``--store-off-too`` on one VM put the
store's cost on chat at 16%, 7% and 4% (bench/NOTES.md, section 26). Here a Switchyard
with the store and one without run side by side, each idle while the other is under
load, and every saturation phase goes to one and then the other in ABBA order, N times
(half of them with each server started first): a drift hits both alike, and the cost
comes from the medians of the rounds.
"""

from __future__ import annotations

import statistics
import time
from typing import TYPE_CHECKING, Any

from common import BenchError, Target, Variant, log
from services import port_of, wait_ready

if TYPE_CHECKING:
    from harness import Harness

PHASES = ("sat_chat", "sat_stream")
VARIANTS = {
    "on": Variant("rounds-store-on", 1, store=True),
    "off": Variant("rounds-store-off", 1, store=False),
}


def measure(h: Harness, rounds: int) -> dict[str, Any]:
    """Per phase: each round's requests/s with the store on and off, their medians and
    the cost; or the error that stopped the rounds.

    Half the rounds run with the store-on server started first, half with it started
    second: of two servers side by side, the one started first came out 4-7% ahead on
    one VM whatever its code (bench/NOTES.md, section 42)."""
    log(f"=== store on vs off, side by side: {rounds} interleaved rounds per phase")
    samples: dict[str, Samples] = {phase: _empty() for phase in PHASES}
    try:
        first_half = (rounds + 1) // 2
        _run_half(h, "on", range(first_half), samples)
        if rounds > first_half:
            _run_half(h, "off", range(first_half, rounds), samples)
    except BenchError as err:
        log(f"store rounds failed: {err}")
        return {"error": str(err)}
    return {phase: _outcome(phase, samples[phase]) for phase in PHASES}


Samples = dict[str, Any]


def _empty() -> Samples:
    return {"rps": {"on": [], "off": []}, "cpu": {"on": [], "off": []}, "errors": 0}


def _run_half(h: Harness, first: str, rounds: range, samples: dict[str, Samples]) -> None:
    order = (first, "off" if first == "on" else "on")
    targets: dict[str, Target] = {}
    try:
        for key in order:
            targets[key] = h.launch(VARIANTS[key])
        for target in targets.values():
            assert target.proc is not None
            wait_ready(port_of(target.base_url), target.proc, h.a.startup_timeout)
            h.phases.warm_up(target, ["chat", "stream"])
        for phase in PHASES:
            _rounds(h, phase, targets, rounds, samples[phase])
    finally:
        for target in targets.values():
            assert target.proc is not None
            h.stop(target.proc)


def _rounds(
    h: Harness, phase: str, targets: dict[str, Target], rounds: range, samples: Samples
) -> None:
    # Numbered across both halves, so that the ABBA order runs on from one to the other.
    for n in rounds:
        for key in ("on", "off") if n % 2 == 0 else ("off", "on"):
            numbers = h.phases.measure(phase, targets[key])
            samples["rps"][key].append(numbers["rps"] or 0.0)
            if numbers.get("cpu_ms_per_req") is not None:  # absent, not zero, if unread
                samples["cpu"][key].append(numbers["cpu_ms_per_req"])
            samples["errors"] += numbers["errors"]
            time.sleep(h.a.pause)


def _outcome(phase: str, samples: Samples) -> dict[str, Any]:
    rps, cpu = samples["rps"], samples["cpu"]
    on, off = statistics.median(rps["on"]), statistics.median(rps["off"])
    cost = round((1.0 - on / off) * 100.0, 2) if off else None
    log(f"  {phase}: store on {on:.0f} req/s, off {off:.0f} (medians): cost {cost} %")
    return {
        "rps_on": rps["on"],
        "rps_off": rps["off"],
        "cpu_ms_on": cpu["on"],
        "cpu_ms_off": cpu["off"],
        "cost_pct": cost,
        "errors": samples["errors"],
    }
