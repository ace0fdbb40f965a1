"""The emulated half of the ISA lane (.ci/isa_lane.py): stream every exported file of a manifest, compare with the
host's float64 references, write one JSON line per run (with the stream's seconds, session creation excluded).
Runs under qemu-x86_64 or qemu-aarch64 with PyTorch blocked, as on a device that installed only the runtime.

A run whose manifest entry names an ``exact`` file (int8-dynamic) is also compared with the host's onnx.reference
run of the same file on the same chunks (its exact integer maths): ``exact_max_abs``, ``exact_worst``.

usage: isa_lane_stream.py MANIFEST OUT_JSONL
The first line written describes the native library as this (emulated) CPU sees it; then one line per run.
"""
import json
import sys
import time
import traceback


class _BlockTorch:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError(f"the ISA lane streams without PyTorch (import of {name!r})")
        return None


sys.meta_path.insert(0, _BlockTorch())

import numpy as np  # noqa: E402

from qlstm_edge.runtime import StreamingSession, native_lib  # noqa: E402

REL_FLOOR = 1e-3  # qlstm_edge.parity.REL_FLOOR (parity.py needs torch); the host checks they agree


def chunks(steps, sizes):
    t, k = 0, 0
    while t < steps:
        t1 = min(t + sizes[k % len(sizes)], steps)
        yield t, t1
        t, k = t1, k + 1


def stream(run, chunk_sizes):
    ref = np.load(run["reference"])
    x, y_ref = ref["x"], ref["y"]
    batch, steps = x.shape[:2]
    calls = native_lib.compute_calls()
    session = StreamingSession(run["file"], native=run["native"])
    session.reset(batch_size=batch)
    start = time.perf_counter()
    ys, bounds = [], list(chunks(steps, chunk_sizes if session.mode == "sequence" else [1]))
    for t0, t1 in bounds:
        if session.mode == "step":
            ys.append(session.step(np.ascontiguousarray(x[:, t0]))[:, None])
        else:
            ys.append(session.run(np.ascontiguousarray(x[:, t0:t1])))
    seconds = time.perf_counter() - start
    y = np.concatenate(ys, axis=1).astype(np.float64)
    err = np.abs(y - y_ref)
    per_step = err.reshape(batch, steps, -1).max(axis=(0, 2))
    got = session.get_state()
    states = {k[len("state:"):]: float(np.abs(got[k[len("state:"):]].astype(np.float64) - ref[k]).max())
              for k in ref.files if k.startswith("state:")}
    result = {"provider": session.provider, "op_path": session.op_path, "output_max_abs": float(per_step.max()),
              "worst_step": int(per_step.argmax()),
              "max_rel": float((err / np.maximum(np.abs(y_ref), REL_FLOOR)).max()),
              "state_max_abs": states, "native_calls": native_lib.compute_calls() - calls, "seconds": seconds}
    if run.get("exact"):  # int8-dynamic: distance from onnx.reference's exact integer maths of the same file
        exact = np.load(run["exact"])
        if exact["bounds"].tolist() != [list(b) for b in bounds]:
            raise RuntimeError(f"streamed chunks {bounds} are not those of the exact maths {exact['bounds'].tolist()}")
        dist = {"output": float(np.abs(y - exact["y"]).max())}
        for k in (k for k in exact.files if k.startswith("state:")):
            name = k[len("state:"):]
            dist[f"final state {name}"] = float(np.abs(got[name].astype(np.float64) - exact[k]).max())
        worst = max(dist, key=dist.get)
        result.update(exact_max_abs=dist[worst], exact_worst=worst)
    return result


def main(manifest_path, out_path):
    manifest = json.loads(open(manifest_path).read())
    st = native_lib.status()
    with open(out_path, "w") as out:
        out.write(json.dumps({"native": {k: st[k] for k in ("available", "reason", "arch", "isa", "isa_supported")},
                              "rel_floor": REL_FLOOR}) + "\n")
        out.flush()
        for run in manifest["runs"]:
            try:
                result = stream(run, manifest["chunk_sizes"])
            except Exception as e:  # every failure is a lane result, reported by the host
                result = {"error": f"{type(e).__name__}: {e}".splitlines()[0],
                          "traceback": traceback.format_exc(limit=3)}
            out.write(json.dumps({"id": run["id"], **result}) + "\n")
            out.flush()
        out.write(json.dumps({"done": True, "torch_imported": "torch" in sys.modules}) + "\n")


if __name__ == "__main__":
    main(*sys.argv[1:])
