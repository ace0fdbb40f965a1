"""Reliability for every family (helpers.FAMILIES): one loaded model shared by many threads, each thread with its
own streams, gives exactly the results of running those streams one by one."""
import threading

import numpy as np
import pytest

from qlstm_edge.parity import random_inputs
from qlstm_edge.runtime import StreamingSession

from helpers import FAMILIES

CHUNKS = (1, 5, 1, 17, 3)  # step() for chunks of 1, run() otherwise


def stream(s, x, resume_at):
    """Feed x through s in CHUNKS, moving the stream to a fresh session (get/set_state) at ``resume_at``."""
    ys, t, k = [], 0, 0
    while t < x.shape[1]:
        if t == resume_at:
            state, s = s.get_state(), s.new_stream()
            s.set_state(state)
        n = min(CHUNKS[k % len(CHUNKS)], x.shape[1] - t)
        ys.append(s.step(x[:, t])[:, None] if n == 1 else s.run(x[:, t:t + n]))
        t, k = t + n, k + 1
    return np.concatenate(ys, 1), s.get_state()


@pytest.mark.parametrize("native", ["off", "auto"])
@pytest.mark.parametrize("mode", ["step", "sequence"])
@pytest.mark.parametrize("family", list(FAMILIES))
def test_one_model_many_threads_each_with_own_streams(family_exports, family, mode, native):
    base = StreamingSession(family_exports(family)[1][mode], native=native)
    xs = [random_inputs(base, 120, 1 + k % 3, seed=k) for k in range(8)]  # batch sizes 1, 2, 3 per thread
    alone = [stream(base.new_stream(), x, resume_at=57) for x in xs]
    results = [None] * len(xs)
    errors = []
    barrier = threading.Barrier(len(xs))

    def work(k):
        try:
            s = base.new_stream()
            barrier.wait()
            results[k] = stream(s, xs[k], resume_at=57)
        except BaseException as e:  # reported by the main thread below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(len(xs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for (y_alone, state_alone), (y, state) in zip(alone, results):
        assert np.array_equal(y, y_alone)
        assert state.keys() == state_alone.keys() and all(np.array_equal(state[n], state_alone[n]) for n in state)
