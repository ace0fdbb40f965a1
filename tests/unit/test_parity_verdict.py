"""The parity verdict: the tolerance, raised only on tensors where PyTorch's own fp32 run is far from exact."""
import json

from qlstm_edge.parity import CONDITIONING, ParityReport


def report(output=1e-6, states=None, floor=1e-7, state_floors=None, tolerance=1e-4):
    states = states or {}
    worst = max(states, key=states.get, default=None)
    max_abs, tensor = (states[worst], f"final state {worst}") if worst and states[worst] > output else (output, "output")
    return ParityReport(family="xlstm-lm", mode="step", steps=2000, batch=1, chunk_sizes=[1], provider="cpu",
                        op_path="native", quantization=None, tolerance=tolerance, reference="float64",
                        max_abs=max_abs, max_rel=0.0, worst_step=1999, worst_tensor=tensor, output_max_abs=output,
                        state_max_abs=states, fp32_floor=floor, fp32_floor_states=state_floors or {})


def test_a_well_conditioned_tensor_is_held_to_the_tolerance():
    r = report(states={"b1.n": 1.06e-4}, state_floors={"b1.n": 1e-5})  # PyTorch's fp32: 4x below the tolerance
    assert r.allowed("b1.n") == 1e-4 and not r.passed
    assert "ill-conditioned" not in str(r)
    assert report(states={"b1.n": 0.9e-4}, state_floors={"b1.n": 1e-5}).passed


def test_an_ill_conditioned_state_is_judged_against_its_fp32_error():
    # an sLSTM normaliser of ~155 after 2,000 steps: PyTorch's own fp32 run is 6.5e-5 from float64 on it
    r = report(states={"b1.n": 1.06e-4, "b1.c": 2e-6}, state_floors={"b1.n": 6.5e-5, "b1.c": 2e-6})
    assert r.passed and r.allowed("b1.n") == CONDITIONING * 6.5e-5 and r.allowed("b1.c") == 1e-4
    text = str(r)
    assert "parity PASS" in text and "final state b1.n: ill-conditioned" in text and "allowed 2.600e-04" in text
    assert "b1.c: ill" not in text
    worse = report(states={"b1.n": CONDITIONING * 6.5e-5 * 1.01}, state_floors={"b1.n": 6.5e-5})
    assert not worse.passed and "parity FAIL" in str(worse)


def test_every_tensor_must_pass_not_only_the_largest_error():
    # the largest error sits on a raised tensor and passes; a smaller one on a well-conditioned tensor fails
    r = report(output=1.5e-4, states={"b1.n": 2e-4}, floor=1e-6, state_floors={"b1.n": 6.5e-5})
    assert r.allowed("b1.n") > r.errors()["b1.n"] and r.errors()["output"] > r.allowed("output")
    assert not r.passed


def test_outputs_too_and_no_raise_without_a_float64_reference():
    assert report(output=3e-4, floor=1e-4).passed  # PyTorch's own fp32 outputs are 1e-4 from exact
    assert not report(output=3e-4, floor=None).passed  # reference float32: no fp32 error known, the tolerance holds


def test_the_json_report_carries_the_floors():
    d = json.loads(report(states={"b1.n": 1e-5}, state_floors={"b1.n": 2e-6}).to_json())
    assert d["fp32_floor_states"] == {"b1.n": 2e-6} and d["passed"]
