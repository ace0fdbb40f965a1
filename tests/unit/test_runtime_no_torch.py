"""The runtime installs and streams without PyTorch: a process where ``import torch`` fails imports
``qlstm_edge.runtime``, streams an exported file (function bodies and, when built, the native kernels) and
never loads torch."""
import json
import os
import subprocess
import sys
import textwrap

import numpy as np

from qlstm_edge import __version__
from qlstm_edge.runtime import StreamingSession

BLOCK_TORCH = textwrap.dedent("""
    import sys

    class BlockTorch:
        def find_spec(self, name, path=None, target=None):
            if name == "torch" or name.startswith("torch."):
                raise ImportError(f"torch is blocked in this process (import of {name!r})")
            return None

    sys.meta_path.insert(0, BlockTorch())
""")

STREAM = textwrap.dedent("""
    import json
    import sys

    import numpy as np

    import qlstm_edge
    from qlstm_edge.runtime import StreamingSession

    path, native, x_path, out_path = sys.argv[1:]
    x = np.load(x_path)
    s = StreamingSession(path, native=native)
    s.reset(batch_size=x.shape[0])
    y = s.run(x)
    np.save(out_path, y)
    print(json.dumps({"torch": "torch" in sys.modules, "op_path": s.op_path, "version": qlstm_edge.__version__}))
""")


def stream_without_torch(tmp_path, path, native, x):
    (tmp_path / "sitecustomize.py").write_text(BLOCK_TORCH)
    (tmp_path / "stream.py").write_text(STREAM)
    np.save(tmp_path / "x.npy", x)
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}  # the same native library and ISA as this process
    done = subprocess.run([sys.executable, str(tmp_path / "stream.py"), str(path), native, str(tmp_path / "x.npy"),
                           str(tmp_path / "y.npy")], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1]), np.load(tmp_path / "y.npy")


def test_torch_is_really_blocked(tmp_path):
    (tmp_path / "sitecustomize.py").write_text(BLOCK_TORCH)
    done = subprocess.run([sys.executable, "-c", "import torch"], env={**os.environ, "PYTHONPATH": str(tmp_path)},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and "torch is blocked" in done.stderr


def test_runtime_streams_without_torch(tmp_path, exported):
    _, paths = exported
    x = np.random.default_rng(0).integers(0, 40, size=(2, 9), dtype=np.int64)
    for native in ("off", "auto"):
        want = StreamingSession(paths["sequence"], native=native)
        want.reset(batch_size=2)
        info, y = stream_without_torch(tmp_path, paths["sequence"], native, x)
        assert info["torch"] is False
        assert info["op_path"] == want.op_path and info["version"] == __version__
        np.testing.assert_array_equal(y, want.run(x))
