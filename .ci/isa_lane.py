"""CI lane: parity of every exportable family on CPUs this machine may not be (x86 ISA levels, ARM64 cores), under
qemu user mode.

On the host (PyTorch): build a small model of every family, export it in every quantization mode x graph mode,
draw a short stream (batch 2) and compute the float64 PyTorch reference and PyTorch's own fp32 error on it, all
into a temporary folder. Then ONE emulated python process per CPU model (.ci/isa_lane_stream.py, PyTorch blocked;
as many at a time as this machine has cores) streams every file through the function bodies (native="off") and the
native kernels (native="on"), timing each stream (session creation excluded; emulated: not a performance figure).
x86 CPUs run the host venv's python under qemu-x86_64; ARM64 cores run Debian's arm64 python under qemu-aarch64,
with the host's numpy/onnx/onnxruntime versions as aarch64 wheels and the native library cross-built for aarch64
(.ci/aarch64_env.py: sysroot, wheels, /proc/cpuinfo and cross build, cached between runs).
Each run is judged as ``check_parity`` judges it (a ParityReport: the mode's documented tolerance per family,
raised only where PyTorch's own fp32 run is ill-conditioned), one line per run; the lane exits non-zero on any
miss, any run that failed or never reported, a native run where no native kernel ran, PyTorch imported under
emulation, a native library that dispatched to another ISA than the emulated CPU's, or a CPU without a native
library for its architecture (its native runs are each a miss).

The C++ runtime (samples/cpp, cross-built for aarch64 against onnxruntime-node's arm64 library) then streams every
family's fp32 step-mode file under each ARM64 core, function bodies and native kernels, and must agree with the
host's build of the same program on the same file within the family's fp32 tolerance.

int8-dynamic runs are judged a second time, independently of the (loose) documented tolerance: on the host,
onnx.reference runs each int8-dynamic file on the same chunks, its states fed back as the streaming feeds them
(the file's exact integer maths, ~2 s for all of them), and every emulated run of that file, native off and on,
must agree with it within EXACT_FACTOR (2) times the exact maths' own distance from the float64 reference (max
abs over the output and the final states). Products that saturate (uint8 x int8 MatMulInteger on x86 without
VNNI) move a run far further from the exact maths than quantization moved the exact maths from float64.

qemu 7.2 has no AVX-512 (AVX-512 and VNNI kernels need real hardware): the x86 CPUs are Haswell (AVX2 + FMA, no
AVX-512) and Nehalem (SSE4.2: the library's scalar path). The ARM64 cores are Cortex-A72 (Raspberry Pi 4: NEON,
no dot product) and Cortex-A76 (Raspberry Pi 5, Jetson Orin class: NEON + sdot/udot). README, "What has run where".

usage: python .ci/isa_lane.py [--steps N] [--keep DIR] [--cpu haswell|nehalem|cortex-a72|cortex-a76 ...]
"""
import argparse
import concurrent.futures
import copy
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from onnx.reference import ReferenceEvaluator

from qlstm_edge.exporters import export_onnx
from qlstm_edge.families.prlstm import PRLSTM, PRLSTMConfig, PRLSTMModel
from qlstm_edge.families.qllstm import QLLSTM, QLLSTMConfig, QLLSTMModel
from qlstm_edge.parity import (CONDITIONING, REL_FLOOR, ParityReport, chunk_bounds, documented_tolerance,
                               random_inputs)
from qlstm_edge.registry import families, get_family
from qlstm_edge.runtime import StreamingSession, native_lib

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from helpers import xlstm_large, xlstm_lm, xlstm_stack  # noqa: E402  (the tests' small xLSTMs)

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import aarch64_env  # noqa: E402

sys.path.insert(0, str(HERE.parent / "runtime" / "native"))
import build as native_build  # noqa: E402

CPUS = {  # name: (architecture, qemu -cpu model, ISA the native library must dispatch to)
    "haswell": ("x86_64", "Haswell-noTSX,-pcid,-x2apic,-tsc-deadline,-invpcid", "avx2"),
    "nehalem": ("x86_64", "Nehalem", "scalar"),
    "cortex-a72": ("aarch64", "cortex-a72", "neon"),
    "cortex-a76": ("aarch64", "cortex-a76", "neon-dotprod"),
}
# numpy's OpenBLAS picks its kernels from more than the emulated CPUID (on an AMD EPYC host it chose its Haswell
# kernels under -cpu Nehalem: SIGILL at `import numpy`); the emulated x86 processes name their core type
OPENBLAS_CORETYPE = {"haswell": "HASWELL", "nehalem": "NEHALEM"}
DEBIAN_PACKAGES = {"x86_64": ("qemu-user",), "aarch64": aarch64_env.PACKAGES}
QUANTS = (None, "fp16", "int8", "int8-dynamic", "int4")
MODES = ("step", "sequence")
NATIVE = ("off", "on")
BATCH = 2
CHUNKS = (1, 7, 16)
EMULATED_TIMEOUT_S = 1500
EXACT_QUANT = "int8-dynamic"  # its runs must also agree with onnx.reference's exact integer maths of the file...
EXACT_FACTOR = 2.0  # ...within this many times the exact maths' own distance from the float64 reference


# one small model per exportable family (token input where the family has it, features otherwise)
MODELS = {
    "qllstm": lambda: QLLSTMModel(QLLSTMConfig(hidden_size=16, num_layers=2, output_size=3, vocab_size=40)),
    "qllstm-stack": lambda: QLLSTM(input_size=5, hidden_size=16, num_layers=2),
    "prlstm": lambda: PRLSTMModel(PRLSTMConfig(hidden_size=8, num_layers=2, output_size=3, stack_levels=8,
                                               vocab_size=40)),
    "prlstm-core": lambda: PRLSTM(input_size=5, hidden_size=8, num_layers=2, stack_levels=8),
    "xlstm-stack": xlstm_stack,
    "xlstm-lm": xlstm_lm,
    "xlstm-large": xlstm_large,
}


def ensure_packages(packages: list):
    """Install the Debian packages that are missing (as root; otherwise say which)."""
    missing = [p for p in packages if subprocess.run(["dpkg-query", "-W", "-f=${Status}", p], capture_output=True,
                                                     text=True).stdout != "install ok installed"]
    if not missing:
        return
    if os.geteuid() != 0:
        sys.exit(f"isa lane: missing Debian packages; install them: apt-get install {' '.join(missing)}")
    print(f"isa lane: installing {' '.join(missing)}", flush=True)
    subprocess.run(f"apt-get update -qq && apt-get install -y -qq {' '.join(missing)}", shell=True, check=True,
                   stdout=subprocess.DEVNULL)


def prepare_aarch64(work: Path, cores: list) -> dict:
    """The emulated ARM64 device: {"site", "packages", "roots": {core: root}, "library": the cross-built native
    library (None when the build failed), "no_library": why there is none}."""
    env = aarch64_env.prepare()
    library, why = aarch64_env.native_library()
    return {"site": env / "site", "packages": aarch64_env.package_view(work / "aarch64_packages"),
            "roots": {c: aarch64_env.core_root(env, CPUS[c][1], work / f"{c}_root") for c in cores},
            "library": library, "no_library": why}


def exact_stream(path: Path, x: np.ndarray, out: Path):
    """onnx.reference's run of the file (exact integer products), streamed as isa_lane_stream streams it: the same
    chunks, each call's state outputs fed back as the next call's inputs (the states the metadata lists, from their
    initial values). Writes y, the final states and the chunk bounds to ``out``; returns (y, states by name)."""
    s = StreamingSession(path, native="off")
    meta = s.metadata
    s.reset(batch_size=x.shape[0])
    state = s.get_state()
    ev = ReferenceEvaluator(str(path))
    bounds = list(chunk_bounds(x.shape[1], CHUNKS if meta.mode == "sequence" else (1,)))
    ys = []
    for t0, t1 in bounds:
        xt = np.ascontiguousarray(x[:, t0:t1] if meta.mode == "sequence" else x[:, t0])
        outs = dict(zip(ev.output_names, ev.run(None, {meta.inputs[0].name: xt,
                                                       **{st.input: state[st.name] for st in meta.states}})))
        y = outs[meta.outputs[0].name]
        ys.append(y if meta.mode == "sequence" else y[:, None])
        state = {st.name: outs[st.output] for st in meta.states}
    y = np.concatenate(ys, axis=1).astype(np.float64)
    state = {k: v.astype(np.float64) for k, v in state.items()}
    np.savez(out, y=y, bounds=np.array(bounds, np.int64), **{f"state:{k}": v for k, v in state.items()})
    return y, state


def prepare(work: Path, steps: int):
    """Export every family x quantization x graph mode and write the references; returns (manifest, facts) where
    facts[run id] holds what the host needs to judge that run."""
    exportable = sorted(f.name for f in families() if f.recipe_path is not None)
    if sorted(MODELS) != exportable:
        sys.exit(f"isa lane: the lane's models {sorted(MODELS)} are not the exportable families {exportable}")
    runs, facts, exact_s = [], {}, 0.0
    for k, (name, make) in enumerate(MODELS.items()):
        torch.manual_seed(k)
        model = make().eval()
        recipe = get_family(name).recipe()
        files = {(q, mode): export_onnx(model, work / f"{name}_{q or 'fp32'}_{mode}.onnx", mode=mode, quantize=q)
                 for q in QUANTS for mode in MODES}
        x = random_inputs(StreamingSession(files[(None, "sequence")], native="off"), steps, BATCH, seed=k)
        xt = torch.from_numpy(x)
        y64, s64 = recipe.reference(copy.deepcopy(model).double(), xt.double() if xt.is_floating_point() else xt, None)
        y32, s32 = recipe.reference(model, xt, None)
        floor = float(np.abs(np.asarray(y32, np.float64) - y64).max())
        floor_states = {s: float(np.abs(np.asarray(s32[s], np.float64) - v).max()) for s, v in s64.items()}
        ref = work / f"{name}_reference.npz"
        np.savez(ref, x=x, y=y64, **{f"state:{s}": v for s, v in s64.items()})
        for (q, mode), path in files.items():
            exact = exact_distance = None
            if q == EXACT_QUANT:
                t = time.monotonic()
                exact = work / f"{path.stem}_exact.npz"
                ye, se = exact_stream(path, x, exact)
                exact_distance = max([float(np.abs(ye - y64).max())]
                                     + [float(np.abs(se[s] - np.asarray(v, np.float64)).max()) for s, v in s64.items()])
                exact_s += time.monotonic() - t
            for native in NATIVE:
                rid = f"{name}/{q or 'fp32'}/{mode}/{native}"
                runs.append({"id": rid, "file": str(path), "native": native, "reference": str(ref),
                             "exact": str(exact) if exact else None})
                facts[rid] = dict(family=name, mode=mode, quantization=q, tolerance=documented_tolerance(recipe, q),
                                  fp32_floor=floor, fp32_floor_states=floor_states, native=native,
                                  exact_distance=exact_distance)
    return {"runs": runs, "chunk_sizes": list(CHUNKS)}, facts, exact_s


def emulate(cpu: str, manifest: Path, out: Path, log: Path, arm: dict) -> subprocess.Popen:
    arch, model, _ = CPUS[cpu]
    env = {k: v for k, v in os.environ.items() if k != "QLSTM_EDGE_NATIVE_ISA"}  # the library picks its own ISA
    env["OMP_NUM_THREADS"] = "1"
    script = [str(HERE / "isa_lane_stream.py"), str(manifest), str(out)]
    if arch == "x86_64":
        cmd = ["qemu-x86_64", "-cpu", model, sys.executable] + script
        env["OPENBLAS_CORETYPE"] = OPENBLAS_CORETYPE[cpu]
    else:
        root = arm["roots"][cpu]
        cmd = ["qemu-aarch64", "-cpu", model, "-L", str(root), str(root / "usr" / "bin" / f"python{aarch64_env.PY}")]
        cmd += script
        env.pop("PYTHONHOME", None)
        env.update(PYTHONPATH=f"{arm['site']}:{arm['packages']}", PYTHONNOUSERSITE="1")
        if arm["library"] is not None:
            env["QLSTM_EDGE_NATIVE_LIB"] = str(arm["library"])
    return subprocess.Popen(cmd, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)


def run_emulated(cpus: list, work: Path, arm: dict) -> dict:
    """Run the CPUs' emulated processes, as many at a time as this machine has cores; {cpu: (rc, timed out)}."""
    slots = len(os.sched_getaffinity(0))
    pending, running, done = list(cpus), {}, {}
    while pending or running:
        while pending and len(running) < slots:
            cpu = pending.pop(0)
            running[cpu] = (emulate(cpu, work / f"manifest_{cpu}.json", work / f"{cpu}.jsonl", work / f"{cpu}.log",
                                    arm), time.monotonic())
        time.sleep(0.5)
        for cpu, (proc, start) in list(running.items()):
            timed_out = proc.poll() is None and time.monotonic() - start > EMULATED_TIMEOUT_S
            if timed_out:
                proc.kill()
            if proc.poll() is not None or timed_out:
                done[cpu] = (proc.wait(), timed_out)
                del running[cpu]
    return done


def judge(cpu: str, results: list, facts: dict, steps: int, no_native: str | None = None) -> list:
    """Print one line per run; returns the problems (empty when the CPU passed). ``no_native``: why this CPU has
    no native library (its native runs were not streamed: each is a miss)."""
    problems = []
    header = results[0] if results and "native" in results[0] else None
    want_isa = CPUS[cpu][2]
    if header is None:
        problems.append(f"{cpu}: the emulated process wrote no header (it died before streaming)")
    else:
        native = header["native"]
        print(f"{cpu}: native library {native['arch']} ISA {native['isa']} (supported {native['isa_supported']}; "
              f"available {native['available']}{', ' + native['reason'] if native['reason'] else ''})")
        if no_native:
            problems.append(f"{cpu}: {no_native}")
        elif native["isa"] != want_isa:
            problems.append(f"{cpu}: the native library dispatched to {native['isa']}, not {want_isa}: the lane is "
                            f"not testing the emulated ISA")
        if header["rel_floor"] != REL_FLOOR:
            problems.append(f"{cpu}: isa_lane_stream.REL_FLOOR {header['rel_floor']} != parity.REL_FLOOR {REL_FLOOR}")
    got = {r["id"]: r for r in results if "id" in r}
    for rid, f in facts.items():
        label = f"{cpu:10} {f['family']:13} {f['mode']:8} {f['quantization'] or 'fp32':12} native={f['native']:3}"
        r = got.get(rid)
        if no_native and f["native"] == "on":
            print(f"{label} {'-':>9} tol {f['tolerance']:.1e} MISS ({no_native})")
            problems.append(f"{cpu} {rid}: {no_native}")
            continue
        if r is None:
            print(f"{label} {'-':>9} tol {f['tolerance']:.1e} MISS (no result: the emulated process died)")
            problems.append(f"{cpu} {rid}: no result")
            continue
        if "error" in r:
            print(f"{label} {'-':>9} tol {f['tolerance']:.1e} MISS ({r['error']})")
            problems.append(f"{cpu} {rid}: {r['error']}")
            continue
        out_max, states = r["output_max_abs"], r["state_max_abs"]
        worst = max(states, key=states.get) if states else None
        max_abs, worst_tensor = out_max, "output"
        if worst is not None and states[worst] > out_max:
            max_abs, worst_tensor = states[worst], f"final state {worst}"
        report = ParityReport(family=f["family"], mode=f["mode"], steps=steps, batch=BATCH,
                              chunk_sizes=list(CHUNKS) if f["mode"] == "sequence" else [1], provider=r["provider"],
                              op_path=r["op_path"], quantization=f["quantization"], tolerance=f["tolerance"],
                              reference="float64", max_abs=max_abs, max_rel=r["max_rel"], worst_step=r["worst_step"],
                              worst_tensor=worst_tensor, output_max_abs=out_max, state_max_abs=states,
                              fp32_floor=f["fp32_floor"], fp32_floor_states=f["fp32_floor_states"])
        want_path = "native" if f["native"] == "on" else "function-body"
        notes = [f"{t} allowed {report.allowed(t):.1e}" for t in report.errors() if report.allowed(t) > f["tolerance"]]
        exact_ok, detail = True, []
        if f["exact_distance"] is not None:  # the file's exact integer maths (onnx.reference), independent of tolerance
            allowed = EXACT_FACTOR * f["exact_distance"]
            vs = r.get("exact_max_abs")
            exact_ok = vs is not None and vs <= allowed
            notes.insert(0, f"vs exact {'-' if vs is None else f'{vs:.1e}'} (allowed {allowed:.1e})")
            if not exact_ok:  # replaces that note in the problem's line
                detail.append("no distance from the exact maths reported" if vs is None else
                              f"{vs:.1e} from onnx.reference's exact maths in {r['exact_worst']}, allowed "
                              f"{allowed:.1e} = {EXACT_FACTOR:g} x the exact maths' {f['exact_distance']:.1e} "
                              "from float64")
        if r["op_path"] != want_path:
            notes.append(f"op path {r['op_path']}, not {want_path}")
        if f["native"] == "on" and r["native_calls"] == 0:
            notes.append("no native kernel ran")
        ok = (report.passed and exact_ok and r["op_path"] == want_path
              and (f["native"] == "off" or r["native_calls"] > 0))
        print(f"{label} {max_abs:9.3e} tol {f['tolerance']:.1e} {'ok' if ok else 'MISS'} {r['seconds'] * 1e3:5.0f} ms "
              f"({r['op_path']}, worst {worst_tensor}{'; ' + '; '.join(notes) if notes else ''})")
        if not ok:
            problems.append(f"{cpu} {rid}: max error {max_abs:.3e} in {worst_tensor}, tolerance {f['tolerance']:.1e}"
                            + (f" ({'; '.join(detail + notes[len(detail):])})" if notes else ""))
    tail = results[-1] if results else {}
    if not tail.get("done"):
        problems.append(f"{cpu}: the emulated process did not finish")
    elif tail["torch_imported"]:
        problems.append(f"{cpu}: PyTorch was imported in the emulated process")
    return problems


def cpp_stream(cmd: list, out: Path) -> dict:
    """Run the C++ sample (``cmd`` ends with its model and input); {"y", "state:NAME"...} or {"error": ...}."""
    out.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(cmd + ["--output", str(out / "y.npy"), "--save-state", str(out)], capture_output=True,
                       text=True, timeout=600)
    if r.returncode != 0:
        return {"error": (r.stderr.strip().splitlines() or [f"exit {r.returncode}"])[-1]}
    return {("y" if f.stem == "y" else f"state:{f.stem}"): np.load(f) for f in out.glob("*.npy")}


def cpp_on_arm(work: Path, arm: dict, cores: list, facts: dict) -> list:
    """The C++ runtime's sample (samples/cpp) cross-built for aarch64 streams the lane's fp32 step-mode files under
    each emulated ARM64 core, function bodies and native kernels, and must agree with the host's build of it on the
    same file within the family's fp32 tolerance (the kernels differ across architectures: not bit for bit).
    Prints one line per run; returns the problems."""
    try:
        host, target = native_build.build_cpp_sample(), native_build.build_cpp_sample("aarch64")
    except (native_build.NativeBuildError, OSError) as e:
        return [f"c++ sample: the build failed: {e}"]
    runs = []
    for name in MODELS:
        path, x = work / f"{name}_fp32_step.onnx", work / f"{name}_cpp_x.npy"
        np.save(x, np.load(work / f"{name}_reference.npz")["x"])
        for native in NATIVE:
            if native == "on" and arm["library"] is None:
                continue
            runs.append((name, path, x, native))
    host_lib = str(native_lib.library_path())

    def host_run(name, path, x, native):
        return cpp_stream([str(host), str(path), str(x), "--native", native, "--native-lib", host_lib],
                          work / "cpp" / f"{name}_{native}_host")

    def arm_run(core, name, path, x, native):
        cmd = ["qemu-aarch64", "-cpu", CPUS[core][1], "-L", str(arm["roots"][core]), str(target), str(path), str(x),
               "--native", native, "--native-lib", str(arm["library"])]
        return cpp_stream(cmd, work / "cpp" / f"{name}_{native}_{core}")

    slots = len(os.sched_getaffinity(0))
    with concurrent.futures.ThreadPoolExecutor(slots) as pool:
        hosts = {(run[0], run[3]): pool.submit(host_run, *run) for run in runs}  # by (family, native)
        arms = {(core, run[0], run[3]): pool.submit(arm_run, core, *run) for core in cores for run in runs}
        problems = []
        for (core, name, native), future in arms.items():
            got, want = future.result(), hosts[name, native].result()
            tol = facts[f"{name}/fp32/step/{native}"]["tolerance"]
            label = f"c++ {core:10} {name:13} step     fp32         native={native:3}"
            error = got.get("error") or want.get("error")
            if error is None and got.keys() != want.keys():
                error = f"the runs wrote different tensors: {sorted(got)} and {sorted(want)}"
            if error is not None:
                print(f"{label} {'-':>9} tol {tol:.1e} MISS ({error})")
                problems.append(f"c++ {core} {name} native={native}: {error}")
                continue
            worst = max(want, key=lambda k: float(np.abs(got[k].astype(np.float64) - want[k]).max()))
            max_abs = float(np.abs(got[worst].astype(np.float64) - want[worst]).max())
            ok = max_abs <= tol
            print(f"{label} {max_abs:9.3e} tol {tol:.1e} {'ok' if ok else 'MISS'} (vs the host's c++ run, worst {worst})")
            if not ok:
                problems.append(f"c++ {core} {name} native={native}: {max_abs:.3e} from the host's run in {worst}, "
                                f"tolerance {tol:.1e}")
    return problems


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=32, help="stream length (default 32)")
    ap.add_argument("--cpu", action="append", choices=sorted(CPUS), help="emulated CPU (default: all)")
    ap.add_argument("--keep", type=Path, help="write the exports, references and logs here instead of a temp folder")
    args = ap.parse_args()
    cpus = [c for c in CPUS if c in (args.cpu or CPUS)]
    arm_cores = [c for c in cpus if CPUS[c][0] == "aarch64"]
    t0 = time.monotonic()
    ensure_packages(sorted({p for c in cpus for p in DEBIAN_PACKAGES[CPUS[c][0]]}))
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="isa_lane_") as tmp, concurrent.futures.ThreadPoolExecutor(1) as pool:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        arm_setup = pool.submit(prepare_aarch64, work, arm_cores) if arm_cores else None  # while exporting
        manifest, facts, exact_s = prepare(work, args.steps)
        arm = arm_setup.result() if arm_setup else None
        no_native = {c: arm["no_library"] for c in arm_cores if arm["library"] is None}
        for cpu in cpus:
            runs = [r for r in manifest["runs"] if not (cpu in no_native and r["native"] == "on")]
            (work / f"manifest_{cpu}.json").write_text(json.dumps({**manifest, "runs": runs}))
        n_exact = sum(1 for f in facts.values() if f["exact_distance"] is not None) // len(NATIVE)
        print(f"isa lane: {len(manifest['runs'])} runs per CPU ({len(MODELS)} families x {len(QUANTS)} quantization "
              f"modes x {len(MODES)} graph modes x native off/on), {args.steps} steps x batch {BATCH}; exported in "
              f"{time.monotonic() - t0:.0f} s, of which {exact_s:.1f} s for the exact maths (onnx.reference) of the "
              f"{n_exact} {EXACT_QUANT} files", flush=True)
        t_emulated = time.monotonic()
        exits = run_emulated(cpus, work, arm)
        print(f"isa lane: emulated CPUs streamed in {time.monotonic() - t_emulated:.0f} s", flush=True)
        problems = []
        for cpu in cpus:
            rc, timed_out = exits[cpu]
            if timed_out:
                problems.append(f"{cpu}: the emulated process ran past {EMULATED_TIMEOUT_S} s and was stopped")
            out = work / f"{cpu}.jsonl"
            results = [json.loads(line) for line in out.read_text().splitlines()] if out.is_file() else []
            problems += judge(cpu, results, facts, args.steps, no_native.get(cpu))
            if rc != 0:
                log = (work / f"{cpu}.log").read_text()[-3000:]
                problems.append(f"{cpu}: the emulated process exited with {rc}:\n{log}")
        if arm_cores:
            t_cpp = time.monotonic()
            problems += cpp_on_arm(work, arm, arm_cores, facts)
            print(f"isa lane: the C++ sample streamed under the ARM64 cores in {time.monotonic() - t_cpp:.0f} s", flush=True)
    print(f"isa lane: {time.monotonic() - t0:.0f} s")
    if problems:
        print(f"isa lane FAILED ({len(problems)} problems):\n  " + "\n  ".join(problems))
        return 1
    print("isa lane passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
