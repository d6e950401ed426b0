"""The fuzzed fault matrix, bounded: hostile messages to the running nodes over DDS and to the policy server.

The same inputs, faults and checks as `vla-ros bench fuzz` (bench/fuzz.py), with EXAMPLES messages per
fault and a fixed seed: every node stays up, no command leaves the limits, refusals are counted on
diagnostics, and after it all the graph still works (the policy's chunks accepted, the teleop node
reporting). The gamepad is a test publisher: no person, no joy node.
"""
import runpy
from pathlib import Path

import pytest

from vla_ros.embodiment import load_embodiment

BENCH = runpy.run_path(str(Path(__file__).resolve().parents[1] / "bench" / "fuzz.py"), run_name="bench_fuzz")
EXAMPLES = 3  # per fault
SEED = 0
ALWAYS_VALID = {"valid, far targets", "valid, fast", "any text", "blank", "driving (deadman held)", "flapping"}


def test_hostile_messages_leave_every_node_up_every_command_in_limits_and_are_counted(ros):
    body = BENCH["BODY"]
    common = {"embodiment": body, "diagnostics_period_s": BENCH["DIAGNOSTICS_PERIOD_S"]}
    ros.start_node("sim_node", **common)
    ros.start_node("controller_node", **common)
    ros.start_node("policy_node", policy="hold", instruction=BENCH["INSTRUCTION"], **common)
    ros.start_node("teleop_node", input="joy", rate_hz=BENCH["TELEOP_RATE_HZ"], **common)
    fuzzer = BENCH["Fuzzer"](ros.node, ros.spin_until, load_embodiment(body))
    ros.spin_until(lambda: fuzzer.status("policy_node").get("level") == 0, 90, "chunks from policy_node")

    rows = [fuzzer.send(name, fault, EXAMPLES, SEED) for name, put in fuzzer.inputs.items() for fault in put.faults]

    assert [p.name for p in ros.processes if not p.running()] == [], ros.describe_processes()
    assert fuzzer.watch.violations == [], fuzzer.watch.violations[:5]
    assert fuzzer.watch.commands > 100, "commands were watched throughout"
    for name in fuzzer.inputs:  # a node may read only the newest message, and may refuse others too: at least one
        refusable = [r for r in rows if r["input"] == name and r["fault"] not in ALWAYS_VALID]
        if refusable:
            assert sum(sum(r["counted"].values()) for r in refusable) > 0, f"{name}: no refusal counted"
    accepted = fuzzer.count("controller_node", "chunks_accepted")
    ros.spin_until(lambda: fuzzer.count("controller_node", "chunks_accepted") > accepted + 2, 30,
                   "the policy's chunks accepted again")
    assert fuzzer.status("teleop_node").get("intervening") == "false"


@pytest.mark.parametrize("fault", BENCH["SERVER_FAULTS"])
def test_the_policy_server_answers_hostile_frames_with_an_error_or_closes_only_that_connection(fault):
    (row,) = [r for r in BENCH["fuzz_server"](EXAMPLES, SEED, faults=[fault])]
    assert row["witness_served"], "another client was served throughout"
    assert row["answered"] + row["counted"]["closed (1009)"] == row["sent"]
    if fault == "oversized frame":
        assert row["counted"]["closed (1009)"] == row["sent"]
    else:
        assert row["counted"]["errors"] + row["valid"] == row["answered"]
        if fault in ("random bytes", "truncated msgpack"):
            assert row["valid"] == 0 and row["counted"]["errors"] == row["sent"]
