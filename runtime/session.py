"""``StreamingSession``: run an exported model step by step or chunk by chunk, carrying its state.

Driven only by the file's ``qlstm_edge`` metadata: no Python model code is needed on the device.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Union

import numpy as np
import onnxruntime as ort

from .errors import InputError, ModelFileError, NativeLibraryError, StreamLimitError, TimeLimitError
from .metadata import DOMAIN, METADATA_KEY, MetadataError, ModelMetadata, TensorSpec
from .model_file import check_external_data, is_ort_format, ort_format_custom_ops, parse_model, proto_custom_ops

log = logging.getLogger("qlstm_edge.runtime")

ORT_TYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(int64)": "int64",
             "tensor(int32)": "int32", "tensor(int8)": "int8", "tensor(uint8)": "uint8"}
NATIVE_CHOICES = {"auto": "auto", "on": "on", "off": "off", True: "on", False: "off"}


class _Watchdog:
    """One daemon thread that stops the onnxruntime calls that pass their deadline, by setting the ``terminate``
    flag of the RunOptions they run with (onnxruntime checks it between kernels, Loop and Scan iterations
    included). The thread starts on first use and sleeps until the earliest armed deadline."""

    def __init__(self):
        self._reset()
        os.register_at_fork(after_in_child=self._reset)  # the thread and a held lock do not survive a fork

    def _reset(self) -> None:
        self._cv = threading.Condition()
        self._armed: Dict[int, tuple] = {}  # id(run options) -> (deadline, run options)
        self._wake: Optional[float] = None  # the deadline the thread sleeps until (None: until woken)
        self._thread: Optional[threading.Thread] = None

    def arm(self, seconds: float) -> ort.RunOptions:
        ro = ort.RunOptions()
        ro.log_severity_level = 4  # a stopped call is reported by TimeLimitError, not by onnxruntime's error log
        # onnxruntime's default graph id, stated: its Python run_with_iobinding looks the entry up, and a missing
        # entry costs a raised and caught exception on every call
        ro.add_run_config_entry("gpu_graph_id", "0")
        deadline = time.monotonic() + seconds
        with self._cv:
            self._armed[id(ro)] = (deadline, ro)
            if self._thread is None:
                self._thread = threading.Thread(target=self._watch, name="qlstm_edge-time-limit", daemon=True)
                self._thread.start()
            if self._wake is None or deadline < self._wake:
                self._cv.notify()
        return ro

    def disarm(self, ro: ort.RunOptions) -> bool:
        """Stop watching ``ro``; True when its deadline passed and the call was told to stop."""
        with self._cv:
            self._armed.pop(id(ro), None)
            return ro.terminate

    def _watch(self) -> None:
        with self._cv:
            while True:
                now = time.monotonic()
                for key, (deadline, ro) in list(self._armed.items()):
                    if deadline <= now:
                        ro.terminate = True
                        del self._armed[key]
                self._wake = min((deadline for deadline, _ in self._armed.values()), default=None)
                self._cv.wait(None if self._wake is None else self._wake - now)


_watchdog = _Watchdog()
_warned_missing: List[bool] = []  # warn once per process that the library was never built

MAX_STREAM_BYTES = 1 << 30  # the most a stream's state and one step's output may take: a file cannot make a
# stream allocate more (xLSTM 7B's whole state is ~130 MB a stream)


def _session_options(threads: Optional[int]) -> ort.SessionOptions:
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads or 1
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.log_severity_level = 3
    # int4 bodies: keep onnxruntime's fused MatMulNBits in float (its default quantizes activations to
    # int8, which drifts ~5e-3 from the body's own arithmetic)
    so.add_session_config_entry("session.qdq_matmulnbits_accuracy_level", "0")
    return so


class _Engine:
    """The immutable, shareable part: one onnxruntime session and the parsed metadata."""

    def __init__(self, path: Path, providers, native, threads: Optional[int]):
        if not path.is_file():
            raise ModelFileError(f"{path}: no such file")
        so = _session_options(threads)
        self.native_library: Optional[Path] = None
        self.native_ops: Optional[set] = None  # ops the registered library implements (None: not listed)
        self.native_note = ""
        mode = NATIVE_CHOICES.get(native)
        if mode is None:
            raise ValueError(f"native must be 'auto', 'on' or 'off' (or True/False), got {native!r}")
        self.providers = self._providers(providers)
        proto, inlined = self._read_custom_ops(path, mode)
        if mode != "off" and inlined is None:
            self._register_native(so, mode, cuda="CUDAExecutionProvider" in self.providers,
                                  model=proto if proto is not None else path)
        try:
            self.sess = ort.InferenceSession(str(path), so, providers=self.providers)
        except Exception as e:  # onnxruntime raises its own exception types (InvalidProtobuf, Fail, ...)
            msg = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise ModelFileError(f"{path}: not a loadable ONNX model ({msg})") from None
        self.meta = self._read_metadata(path)
        self._check_graph(path)
        self.step_limit = self._step_limit(path)
        self.provider = self.sess.get_providers()[0]
        self.op_path = self._op_path()
        if mode == "on":
            self._require_native(inlined)
        self._stream_layout()

    def _read_custom_ops(self, path: Path, mode: str):
        """Parse the file (checking its external data) and find the custom ops its graph actually has, not the
        metadata's: a tool may have inlined their functions, leaving none. Returns (the parsed ModelProto, None
        for an ORT-format file; why no native kernel can run when the ops were inlined, else None)."""
        ort_format = is_ort_format(path)
        proto = None if ort_format else parse_model(path)  # parsed for the checks; onnxruntime loads the file
        if proto is not None:
            check_external_data(path, proto)
        # None: an ORT-format file that does not decode, and loading it says so
        found = ort_format_custom_ops(path) if ort_format else proto_custom_ops(proto)
        self.custom_ops = sorted(found or ())
        if found is None or found:
            return proto, None
        inlined = (f"{path} has no {DOMAIN} custom nodes (op_path 'function-body'): a tool inlined the ops' "
                   f"functions into standard ops (onnx's inliner, or the ORT-format converter run without the "
                   f"native library)")
        if mode == "auto":
            self.native_note = f"{inlined}; the native library is not registered"
        return proto, inlined

    def _read_metadata(self, path: Path) -> ModelMetadata:
        meta_text = self.sess.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
        if meta_text is None:
            raise ModelFileError(f"{path}: an ONNX model, but not a qlstm-edge export (no {METADATA_KEY!r} "
                                 f"metadata); export it with `qlstm-edge export`")
        try:
            return ModelMetadata.from_json(meta_text, str(path))
        except MetadataError as e:
            raise ModelFileError(str(e)) from None

    def _require_native(self, inlined: Optional[str]) -> None:
        """native='on': refuse a session whose custom nodes are not all run by the native library."""
        if inlined is not None:
            raise NativeLibraryError(f"native='on' but {inlined}, so no native kernel can run; use native='auto' or "
                                     f"'off', or the file as exported")
        if self.op_path != "native":
            missing = sorted(set(self.custom_ops) - (self.native_ops or set()))
            raise NativeLibraryError(f"native='on' but the native op library has no kernels for {missing} "
                                     f"(it implements {sorted(self.native_ops or [])}); use native='auto'")

    def _stream_layout(self) -> None:
        """What every call reads: tensor names, the shape and dtype of one step's input and output, and whether
        the stream runs on bound buffers."""
        m = self.meta
        self.x_spec, self.y_spec = m.inputs[0], m.outputs[0]
        self.out_names = [self.y_spec.name] + [s.output for s in m.states]
        self.state_names = [s.name for s in m.states]
        self.state_inputs = [(s.name, s.input) for s in m.states]
        self.seq = m.mode == "sequence"
        rank = len(self.x_spec.shape)
        self.step_shape = self.x_spec.shape[2:] if self.seq else self.x_spec.shape[1:]
        self.x_rank_step = rank - 1 if self.seq else rank
        self.x_dtype = np.dtype(self.x_spec.dtype)
        fixed = all(isinstance(d, int) for d in self.step_shape)
        self.x_tail = tuple(self.step_shape) if fixed else None  # None: symbolic dims, always the slow path
        self.y_tail = tuple(m.outputs[0].shape[2 if self.seq else 1:])  # fixed sizes (checked with the metadata)
        self.y_dtype = np.dtype(self.y_spec.dtype)
        # bound buffers skip the per-call numpy <-> onnxruntime conversion of every state; on the CPU provider
        # only, where the buffers are the tensors the kernels read and write
        self.bind = self.provider == "CPUExecutionProvider" and self.x_tail is not None

    def _step_limit(self, path: Path):
        """(max_steps, counter state name) when the metadata bounds a stream's length, else None.

        A family whose state cannot grow past some length (PR-LSTM's K-level stack holds 2^K - 1 tokens)
        records ``extra["max_steps"]`` and ``extra["step_counter"]``, the int64 [batch] state counting the
        steps a stream has taken.
        """
        extra = self.meta.extra
        if "max_steps" not in extra:
            return None
        limit, counter = extra["max_steps"], extra.get("step_counter")
        spec = next((s for s in self.meta.states if s.name == counter), None)
        if type(limit) is not int or limit < 1 or spec is None or spec.dtype != "int64" or spec.shape != ["batch"]:
            raise ModelFileError(f"{path}: metadata extra max_steps={limit!r} needs a positive integer and "
                                 f"step_counter naming an int64 [batch] state, got step_counter={counter!r}")
        return limit, counter

    def _op_path(self) -> str:
        """"native" when the library has a kernel for every custom node of the graph, "function-body" when it has
        none (or is not registered, or the graph has no custom node left: a tool inlined their functions), "mixed"
        otherwise (the library's info lists its ops)."""
        if self.native_library is None or not self.custom_ops:
            return "function-body"
        if self.native_ops is None:
            return "native"
        covered = [op in self.native_ops for op in self.custom_ops]
        return "native" if all(covered) else "mixed" if any(covered) else "function-body"

    def _register_native(self, so: ort.SessionOptions, mode: str, cuda: bool, model) -> None:
        from . import native_lib

        if cuda and native_lib.library_path(cuda=True) is None:
            log.warning("no CUDA build of the native op library; its CPU kernels will run the custom ops")
            cuda = False
        status = native_lib.status(cuda)
        if not status["available"]:
            if mode == "on":
                raise NativeLibraryError(f"native='on' but the native op library is unavailable: {status['reason']}")
            self.native_note = status["reason"]
            if status["path"] is not None or not _warned_missing:
                _warned_missing.append(True)
                log.warning("native op library not used, running function bodies instead: %s", status["reason"])
            return
        blocked = native_lib.unsupported_nodes(model, status)
        if blocked:  # registering the library would make onnxruntime refuse these nodes (and the model)
            why = f"the native op library has no kernels for the nodes {blocked}"
            if mode == "on":
                raise NativeLibraryError(f"native='on' but {why}; use native='auto' or 'off'")
            self.native_note = f"{why}; running the function bodies"
            return
        self.native_ops = set(status["ops"]) if status.get("ops") is not None else None
        try:
            self.native_library = native_lib.register(so, cuda=cuda)
        except Exception as e:  # a library built for another onnxruntime, a broken file, ...
            if mode == "on":
                raise NativeLibraryError(f"native='on' but the native op library failed to register: {e}") from None
            log.warning("native op library not used, running function bodies instead: %s", e)
            self.native_note = str(e)

    @staticmethod
    def _providers(providers) -> List[str]:
        if providers is None or providers == "cpu":
            return ["CPUExecutionProvider"]
        if providers == "cuda":
            if "CUDAExecutionProvider" in ort.get_available_providers():
                return ["CUDAExecutionProvider", "CPUExecutionProvider"]
            log.warning("CUDA requested but this onnxruntime has no CUDAExecutionProvider (available: %s); "
                        "falling back to CPUExecutionProvider", ", ".join(ort.get_available_providers()))
            return ["CPUExecutionProvider"]
        if isinstance(providers, str):
            providers = [providers]
        return list(providers)

    def _check_graph(self, path: Path) -> None:
        """The metadata's tensors are the graph's: names, dtypes and shapes (a fixed size the graph declares must
        be the metadata's), and a stream's state and one step's output fit in MAX_STREAM_BYTES."""
        ins = {i.name: i for i in self.sess.get_inputs()}
        outs = {o.name: o for o in self.sess.get_outputs()}
        m = self.meta
        want_in = [(t.name, t, "data input") for t in m.inputs] + [(s.input, s, f"state {s.name!r}") for s in m.states]
        want_out = ([(t.name, t, "data output") for t in m.outputs]
                    + [(s.output, s, f"state {s.name!r}") for s in m.states])
        for names, want, kind in ((ins, want_in, "input"), (outs, want_out, "output")):
            for name, spec, what in want:
                if name not in names:
                    raise ModelFileError(f"{path}: metadata names graph {kind} {name!r}, which the graph lacks")
                got = ORT_TYPES.get(names[name].type, names[name].type)
                if got != spec.dtype:
                    raise ModelFileError(f"{path}: metadata says graph {kind} {name!r} is {spec.dtype}, the graph "
                                         f"has {got}")
                declared = names[name].shape  # [] when the graph declares no shape: nothing to compare
                if declared and (len(declared) != len(spec.shape) or any(
                        isinstance(d, int) and isinstance(g, int) and d != g for d, g in zip(spec.shape, declared))):
                    raise ModelFileError(f"{path}: metadata gives the {what} the shape {spec.shape}, the graph "
                                         f"declares its {kind} {name!r} as {declared}")
            extra = sorted(set(names) - {n for n, _, _ in want})
            if extra:
                raise ModelFileError(f"{path}: graph {kind}s {extra} are not described by the metadata")
        y, lead = m.outputs[0], 2 if m.mode == "sequence" else 1  # per stream: a state's row, a step's output
        total = 0
        for what, spec, tail in ([(f"state {s.name!r}", s, s.shape[1:]) for s in m.states]
                                 + [("data output", y, y.shape[lead:])]):
            size = np.dtype(spec.dtype).itemsize
            for d in tail:
                size *= d if isinstance(d, int) else 1
            total += size
            if total > MAX_STREAM_BYTES:
                raise ModelFileError(f"{path}: the {what} ({spec.shape}, {spec.dtype}) takes the states and one "
                                     f"step's output of a stream to {total:,} bytes, over the runtime's bound of "
                                     f"{MAX_STREAM_BYTES:,} bytes a stream (qlstm_edge.runtime.session."
                                     f"MAX_STREAM_BYTES); refusing to allocate it")


class _Bound:
    """A stream's input, output and state buffers bound once to two onnxruntime IOBindings that swap roles.

    Binding ``k`` reads the states from buffer set ``k`` and writes the new ones into set ``1 - k``, so a call
    copies x in, runs, and flips ``k``: no per-call conversion of the states. ``state`` is the live set (the
    stream's state dict until the next call overwrites the other set); ``get_state`` hands out copies. Built
    again when the state is replaced (``reset``, ``set_state``) or x changes shape (another chunk length).
    """

    def __init__(self, e: _Engine, state: Dict[str, np.ndarray], x_shape: tuple):
        first = {k: np.array(v, copy=True, order="C") for k, v in state.items()}
        self.sets = [first, {k: np.empty_like(v) for k, v in first.items()}]
        self.x = np.empty(x_shape, e.x_dtype)
        lead = x_shape[:2] if e.seq else x_shape[:1]
        self.y = np.empty((*lead, *e.y_tail), e.y_dtype)
        ortvalue = ort.OrtValue.ortvalue_from_numpy  # wraps the numpy buffer, no copy
        self.bindings = []
        for k in (0, 1):
            io = e.sess.io_binding()
            io.bind_ortvalue_input(e.x_spec.name, ortvalue(self.x))
            io.bind_ortvalue_output(e.y_spec.name, ortvalue(self.y))
            for (name, graph_input), graph_output in zip(e.state_inputs, e.out_names[1:]):
                io.bind_ortvalue_input(graph_input, ortvalue(self.sets[k][name]))
                io.bind_ortvalue_output(graph_output, ortvalue(self.sets[1 - k][name]))
            self.bindings.append(io)
        self.k = 0

    @property
    def state(self) -> Dict[str, np.ndarray]:
        return self.sets[self.k]

    def run(self, sess: ort.InferenceSession, x: np.ndarray, ro: Optional[ort.RunOptions]) -> np.ndarray:
        np.copyto(self.x, x)
        sess.run_with_iobinding(self.bindings[self.k], ro)
        self.k ^= 1
        return self.y.copy()


class StreamingSession:
    """Stream an exported qlstm-edge model.

    ``step(x)`` runs one time step (x: [B, ...]); ``run(x)`` runs a chunk (x: [B, T, ...]). Both work on
    step- and sequence-mode files. State is carried between calls; ``get_state``/``set_state`` persist
    and resume a stream bit-exactly; ``reset(rows=...)`` restarts some streams of a batch.

    providers: None/"cpu", "cuda" (falls back to CPU with a warning if unavailable) or a provider list.
    native: "auto" (use the native op library when present), "on" (require it) or "off" (function bodies).
    threads: onnxruntime intra-op threads (default 1: batch-1 streaming is latency-bound).
    allow_nonfinite: let NaN/Inf inputs through instead of refusing them.
    time_limit_s: stop a ``step``/``run`` call that takes longer (seconds; None: no limit) with TimeLimitError,
    the state unchanged. A file from an untrusted source can otherwise cost unbounded time (a Loop of 2^62
    iterations), and a running onnxruntime call does not see Ctrl-C. Settable on the session at any time.
    """

    def __init__(self, path: Union[str, os.PathLike], *, providers=None, native="auto", threads: Optional[int] = None,
                 allow_nonfinite: bool = False, time_limit_s: Optional[float] = None,
                 _engine: Optional[_Engine] = None):
        self.path = Path(path)
        self.time_limit_s = time_limit_s
        self._e = _engine or _Engine(self.path, providers, native, threads)
        self.allow_nonfinite = allow_nonfinite
        self._state: Optional[Dict[str, np.ndarray]] = None
        self._bound: Optional[_Bound] = None
        self._lock = threading.Lock()

    @property
    def time_limit_s(self) -> Optional[float]:
        return self._time_limit

    @time_limit_s.setter
    def time_limit_s(self, seconds: Optional[float]) -> None:
        if seconds is not None and (isinstance(seconds, bool) or not isinstance(seconds, (int, float))
                                    or not 0 < seconds < float("inf")):
            raise ValueError(f"time_limit_s must be a positive number of seconds or None, got {seconds!r}")
        self._time_limit = seconds

    # -- facts -------------------------------------------------------------------------------------
    @property
    def metadata(self) -> ModelMetadata:
        return self._e.meta

    @property
    def mode(self) -> str:
        return self._e.meta.mode

    @property
    def provider(self) -> str:
        return self._e.provider

    @property
    def op_path(self) -> str:
        """"native" (the native library runs every custom op), "mixed" (some) or "function-body"."""
        return self._e.op_path

    @property
    def native_library(self) -> Optional[Path]:
        return self._e.native_library

    @property
    def batch_size(self) -> Optional[int]:
        return None if self._state is None else next(iter(self._state.values())).shape[0]

    @property
    def state_names(self) -> List[str]:
        return [s.name for s in self._e.meta.states]

    def describe(self) -> Dict[str, object]:
        m = self._e.meta
        return {"path": str(self.path), "family": m.family, "mode": m.mode, "target": m.target,
                "provider": self.provider, "op_path": self.op_path, "custom_ops": list(self._e.custom_ops),
                "native_library": str(self.native_library) if self.native_library else None,
                "native_note": self._e.native_note or None, "quantization": m.quantization}

    def new_stream(self) -> "StreamingSession":
        """Another independent stream over the same loaded model (cheap; safe to use from another thread)."""
        return StreamingSession(self.path, allow_nonfinite=self.allow_nonfinite, time_limit_s=self.time_limit_s,
                                _engine=self._e)

    # -- state -------------------------------------------------------------------------------------
    def _initial(self, batch: int) -> Dict[str, np.ndarray]:
        # the metadata's state shapes are ["batch", fixed sizes...] (checked at load)
        return {s.name: np.full((batch, *s.shape[1:]), s.init, dtype=s.dtype) for s in self._e.meta.states}

    @staticmethod
    def _rows(rows, batch: int) -> np.ndarray:
        """The row indices that ``rows`` names: integer row indices, or a boolean mask with one entry per stream."""
        def refuse(what):
            return InputError(f"reset rows must be integer row indices or a boolean mask of the batch size {batch}, "
                              f"got {what}")

        if type(rows) is np.ndarray:
            if rows.ndim != 1:
                raise refuse(f"a {rows.ndim}-D array")
            if rows.dtype != bool and rows.dtype.kind not in "iu":
                raise refuse(f"an array of {rows.dtype}")
            items = rows.tolist()
        elif isinstance(rows, (str, bytes, dict)) or not isinstance(rows, Iterable):
            raise refuse(f"{type(rows).__name__} {rows!r}")
        else:
            items = list(rows)
        flags = [isinstance(r, (bool, np.bool_)) for r in items]
        for r, flag in zip(items, flags):
            if not flag and not isinstance(r, (int, np.integer)):
                raise refuse(f"{type(r).__name__} {r!r}")
        if any(flags):
            if not all(flags):
                raise refuse("a mix of booleans and integers")
            if len(items) != batch:
                raise InputError(f"reset rows: a boolean mask needs one entry per stream ({batch}), got {len(items)}")
            return np.flatnonzero(items)
        outside = [int(r) for r in items if not 0 <= r < batch]
        if outside:
            raise InputError(f"reset rows {outside} out of range for batch size {batch}")
        return np.array(items, dtype=np.int64)

    def reset(self, batch_size: Optional[int] = None,
              rows: Optional[Union[Iterable[int], Iterable[bool], np.ndarray]] = None) -> None:
        """Restart the stream. ``rows``: restart only these batch rows, given as integer row indices or as a
        boolean mask with one entry per stream (a done-mask); ``batch_size``: a new batch size."""
        with self._lock:
            if rows is None:
                b = batch_size if batch_size is not None else self.batch_size
                if b is not None and (not isinstance(b, (int, np.integer)) or b < 1):
                    raise InputError(f"batch_size must be a positive integer, got {b!r}")
                self._state = None if b is None else self._initial(int(b))
                return
            if batch_size is not None:
                raise InputError("reset: give either rows (restart some streams) or batch_size, not both")
            if self._state is None:
                raise InputError("reset(rows=...): the stream has no state yet (no step run or batch size set)")
            idx = self._rows(rows, self.batch_size)
            state = {k: v.copy() for k, v in self._state.items()}  # a new dict: the bound buffers are rebuilt
            for s in self._e.meta.states:
                state[s.name][idx] = s.init
            self._state = state

    def get_state(self) -> Dict[str, np.ndarray]:
        """A copy of every state tensor, by metadata name (empty dict before the first call)."""
        with self._lock:
            return {} if self._state is None else {k: v.copy() for k, v in self._state.items()}

    def set_state(self, state: Dict[str, np.ndarray]) -> None:
        """Resume a stream from ``get_state()`` output (checked against this model; copied)."""
        specs = {s.name: s for s in self._e.meta.states}
        if not isinstance(state, dict):
            raise InputError(f"state must be a dict of arrays keyed by {sorted(specs)}, got {type(state).__name__}")
        missing, unknown = sorted(set(specs) - set(state)), sorted(set(state) - set(specs))
        if missing or unknown:
            raise InputError(f"state does not belong to this model: missing {missing}, unexpected {unknown}")
        new, batch = {}, None
        for name, spec in specs.items():
            arr = state[name]
            if type(arr) is not np.ndarray:
                raise InputError(self._not_plain(arr, f"state {name!r}", "numpy array"))
            batch = arr.shape[0] if batch is None and arr.ndim else batch
            want = (batch if batch is not None else -1, *spec.shape[1:])
            if arr.shape != want:
                raise InputError(f"state {name!r} has shape {list(arr.shape)}, expected {list(want)}")
            if arr.dtype != np.dtype(spec.dtype):
                raise InputError(f"state {name!r} has dtype {arr.dtype}, expected {spec.dtype}")
            if not self.allow_nonfinite:
                self._check_finite(arr, f"state {name!r}")
            new[name] = np.array(arr, copy=True)
        if self._e.step_limit is not None:
            limit, counter = self._e.step_limit
            bad = np.flatnonzero((new[counter] < 0) | (new[counter] > limit))
            if bad.size:
                r = int(bad[0])
                raise InputError(f"state {counter!r} says stream {r} has taken {int(new[counter][r])} steps; a stream "
                                 f"of this model takes 0 to {limit} steps (metadata extra['max_steps'])")
        with self._lock:
            self._state = new

    # -- running -----------------------------------------------------------------------------------
    def step(self, x: np.ndarray) -> np.ndarray:
        """One time step: x [B, ...] -> y [B, ...]."""
        e = self._e
        self._check_x(x, chunk=False)
        with self._lock:
            state = self._state_for(x.shape[0])
            self._check_limit(state, 1)
            if self._time_limit is not None:
                return self._timed(x, state, chunk=False)
            if e.seq:
                return self._call(x[:, None], state)[:, 0]
            return self._call(x, state)

    def run(self, x: np.ndarray) -> np.ndarray:
        """A chunk of time steps: x [B, T, ...] -> y [B, T, ...] (T may be 0: nothing happens).

        A call that fails or is interrupted part way (an error, Ctrl-C, the time limit) leaves the state as it
        was before the call, on step-mode files too, which run the chunk one step at a time."""
        e = self._e
        self._check_x(x, chunk=True)
        with self._lock:
            state = self._state_for(x.shape[0])
            if x.shape[1] == 0:
                return np.zeros((x.shape[0], 0, *e.y_tail), e.y_dtype)
            self._check_limit(state, x.shape[1])
            if self._time_limit is not None:
                return self._timed(x, state, chunk=True)
            return self._run(x, state)

    def _run(self, x: np.ndarray, state: Dict[str, np.ndarray], ro: Optional[ort.RunOptions] = None) -> np.ndarray:
        if self._e.seq:
            return self._call(x, state, ro)
        # bound buffers are overwritten by the steps: keep a copy to put back (unbound states are never written)
        saved = {k: v.copy() for k, v in state.items()} if self._e.bind and x.shape[1] > 1 else state
        try:
            ys = [self._call(np.ascontiguousarray(x[:, t]), self._state, ro) for t in range(x.shape[1])]
        except BaseException:  # Ctrl-C as well: a chunk is applied whole or not at all
            self._state = saved
            raise
        return np.stack(ys, axis=1)

    def _timed(self, x: np.ndarray, state: Dict[str, np.ndarray], chunk: bool) -> np.ndarray:
        """step (x [B, ...]) or run (x [B, T, ...]) under the time limit: one deadline for the whole call."""
        ro = _watchdog.arm(self._time_limit)
        try:
            if chunk:
                y = self._run(x, state, ro)
            else:
                y = self._call(x[:, None], state, ro)[:, 0] if self._e.seq else self._call(x, state, ro)
        except BaseException as err:  # Ctrl-C too: the watch ends with the call
            if _watchdog.disarm(ro) and isinstance(err, Exception):
                raise TimeLimitError(f"the call ran past the session's time limit of {self._time_limit} s and was "
                                     f"stopped; the stream's state is unchanged") from err
            raise
        _watchdog.disarm(ro)
        return y

    def _call(self, x: np.ndarray, state: Dict[str, np.ndarray], ro: Optional[ort.RunOptions] = None) -> np.ndarray:
        """One onnxruntime call; the stream's state moves on only when it succeeds."""
        e = self._e
        if e.bind:
            b = self._bound
            if b is None or b.state is not state or b.x.shape != x.shape:
                b = self._bound = _Bound(e, state, x.shape)
            y = b.run(e.sess, x, ro)
            self._state = b.state
            return y
        feed = {e.x_spec.name: x}
        for name, graph_input in e.state_inputs:
            feed[graph_input] = state[name]
        outs = e.sess.run(e.out_names, feed, ro)
        self._state = dict(zip(e.state_names, outs[1:]))
        return outs[0]

    def _check_limit(self, state: Dict[str, np.ndarray], steps: int) -> None:
        if self._e.step_limit is None:
            return
        limit, counter = self._e.step_limit
        over = np.flatnonzero(state[counter] > limit - steps)
        if over.size:
            r = int(over[0])
            raise StreamLimitError(f"stream {r} has taken {int(state[counter][r])} steps and this model holds at most "
                                   f"{limit} steps per stream (metadata extra['max_steps']): {steps} more would pass "
                                   f"the limit; call reset(rows=[{r}]) to start that stream again")

    def _state_for(self, batch: int) -> Dict[str, np.ndarray]:
        if self._state is None:
            self._state = self._initial(batch)
        elif self.batch_size != batch:
            raise InputError(f"x has batch size {batch} but the stream's state has batch size {self.batch_size}; "
                             f"call reset(batch_size={batch}) to start new streams")
        return self._state

    def _check_x(self, x, chunk: bool) -> None:
        e = self._e
        if (type(x) is np.ndarray and x.dtype == e.x_dtype and x.shape[2 if chunk else 1:] == e.x_tail
                and x.ndim == e.x_rank_step + chunk and x.shape[0] > 0):
            rng = e.x_spec.range
            if x.size == 0:
                return
            if rng is None and (self.allow_nonfinite or np.isfinite(x).all()):
                return  # the common case: a well-formed float input, checked with one numpy call
            if rng is not None:
                if x.size <= 64:  # a streaming step's few ids: Python's min/max is cheaper than two numpy reductions
                    ids = x.ravel().tolist()
                    lo, hi = min(ids), max(ids)
                else:
                    lo, hi = x.min(), x.max()
                if rng[0] <= lo and hi < rng[1]:
                    return
        self._explain_bad_x(x, chunk)

    def _explain_bad_x(self, x, chunk: bool) -> None:
        """The slow path: find what is wrong with ``x`` and raise an error that names it."""
        e = self._e
        spec: TensorSpec = e.x_spec
        what = "x chunk" if chunk else "x"
        if type(x) is not np.ndarray:
            raise InputError(self._not_plain(x, what, f"numpy array of {spec.dtype}"))
        if x.dtype != np.dtype(spec.dtype):
            raise InputError(f"{what} has dtype {x.dtype}, expected {spec.dtype} (use x.astype(np.{spec.dtype}))")
        step_shape = list(e.step_shape)
        want = ["batch", "time", *step_shape] if chunk else ["batch", *step_shape]
        if x.ndim != len(want):
            raise InputError(f"{what} has rank {x.ndim} (shape {list(x.shape)}), expected rank {len(want)}: {want}")
        if x.shape[0] == 0:
            raise InputError(f"{what} has batch size 0")
        for axis, (got, dim) in enumerate(zip(x.shape, want)):
            if isinstance(dim, int) and got != dim:
                raise InputError(f"{what} has shape {list(x.shape)}, expected {want} (axis {axis} must be {dim})")
        if x.size == 0:
            return
        if spec.range is not None:
            lo, hi = spec.range
            bad = np.flatnonzero((x < lo) | (x >= hi))
            if bad.size:
                idx = np.unravel_index(bad[0], x.shape)
                raise InputError(f"{what}: token id {x[idx]} at index {list(map(int, idx))} is out of the vocabulary "
                                 f"range [{lo}, {hi})")
        elif not self.allow_nonfinite:
            self._check_finite(x, what)

    @staticmethod
    def _not_plain(x, what: str, want: str) -> str:
        """The message for an x or state that is not a plain numpy array. Subclasses are refused, not unwrapped:
        onnxruntime reads an array's raw data, which a masked array's checks would not see (a NaN under the mask)
        and which may not mean what the subclass means (units, a mask)."""
        if not isinstance(x, np.ndarray):
            return f"{what} must be a {want}, got {type(x).__name__}"
        return (f"{what} must be a plain {want}, got {type(x).__module__}.{type(x).__name__} (an ndarray subclass: "
                f"onnxruntime would read its raw data, masked entries included); pass np.asarray(x)"
                + (", or x.filled(value)" if isinstance(x, np.ma.MaskedArray) else ""))

    @staticmethod
    def _check_finite(x: np.ndarray, what: str) -> None:
        if x.dtype.kind == "f" and not np.isfinite(x).all():
            idx = np.unravel_index(np.flatnonzero(~np.isfinite(x))[0], x.shape)
            raise InputError(f"{what} has a non-finite value {x[idx]} at index {list(map(int, idx))} "
                             f"(pass allow_nonfinite=True to let NaN/Inf through)")
