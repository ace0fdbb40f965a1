"""The ISA lane's emulated ARM64 device (.ci/isa_lane.py): Debian packages and PyPI only, cached between runs.

- Debian packages (PACKAGES; the lane installs those missing): qemu-user, mmdebstrap and the aarch64 cross compilers.
- ``prepare()``, under CACHE/KEY (CACHE: $XDG_CACHE_HOME or ~/.cache, then qlstm_edge/arm-lane; KEY: a hash of the
  Debian suite, the Python version, the exact wheel versions and the cpuinfo helper's source; a new key removes
  the others): an arm64 sysroot with Debian's python (``mmdebstrap --variant=extract``: nothing runs under
  emulation); site/, the host venv's numpy, onnx and onnxruntime and everything they need, at the host's exact
  versions, as aarch64 wheels; and cpuinfo, the static helper built from aarch64_cpuinfo.c.
- ``core_root()``: per emulated core, a root linking the sysroot with its own proc/cpuinfo, written by the helper
  under that core. qemu-user shows the guest the host's x86 /proc/cpuinfo (aarch64 onnxruntime crashes on it);
  with ``qemu-aarch64 -L ROOT`` the guest reads ROOT/proc/cpuinfo. Another core's data would mislead onnxruntime
  (Cortex-A76 data under -cpu cortex-a72 selects dot-product kernels: SIGILL).
- ``package_view()``: the checkout laid out as pyproject's package-dir installs it (symlinks), for PYTHONPATH.
- ``native_library()``: the checkout's native library cross-built for aarch64 (CROSS_BUILD; up-to-date check
  included), which the lane passes to the emulated process as $QLSTM_EDGE_NATIVE_LIB.
"""
import fcntl
import hashlib
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path

from packaging.requirements import Requirement

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PACKAGES = ("qemu-user", "mmdebstrap", "g++-aarch64-linux-gnu", "libc6-dev-arm64-cross")
WHEELS = ("numpy", "onnx", "onnxruntime")  # with their dependencies, at the host venv's versions
PY = f"{sys.version_info.major}.{sys.version_info.minor}"
SYSROOT_PACKAGES = (f"python{PY}", f"libpython{PY}-stdlib", "libstdc++6", "libgomp1")
PLATFORMS = ("manylinux_2_28_aarch64", "manylinux_2_27_aarch64", "manylinux_2_26_aarch64", "manylinux2014_aarch64")
HELPER = HERE / "aarch64_cpuinfo.c"
SOURCES = Path("/etc/apt/sources.list.d/debian.sources")  # the host's mirror, when it has this file
CROSS_BUILD = [sys.executable, str(ROOT / "runtime" / "native" / "build.py"), "--target", "aarch64", "--require"]


def cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "qlstm_edge" / "arm-lane"


def pins() -> dict:
    """{distribution: host version} for WHEELS and what they require on aarch64 (no extras)."""
    out, todo = {}, list(WHEELS)
    while todo:
        name = todo.pop()
        dist = importlib.metadata.distribution(name)
        key = dist.metadata["Name"].lower().replace("_", "-")
        if key in out:
            continue
        out[key] = dist.version
        for spec in dist.requires or ():
            req = Requirement(spec)
            if req.marker is None or req.marker.evaluate({"extra": "", "platform_machine": "aarch64"}):
                todo.append(req.name)
    return dict(sorted(out.items()))


def debian_suite() -> str:
    for line in Path("/etc/os-release").read_text().splitlines():
        if line.startswith("VERSION_CODENAME="):
            return line.split("=", 1)[1].strip('"')
    sys.exit("isa lane: /etc/os-release names no Debian suite (VERSION_CODENAME) for the aarch64 sysroot")


def _run(cmd: list, what: str, **kw):
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)
    if r.returncode != 0:
        raise RuntimeError(f"aarch64 setup: {what} failed ({r.returncode}): {' '.join(map(str, cmd))}\n"
                           f"{r.stdout[-3000:]}")


def prepare() -> Path:
    """The cached sysroot, site/ and cpuinfo helper (made when missing; one lane at a time); returns their folder."""
    suite = debian_suite()
    wanted = pins()
    spec = {"suite": suite, "sysroot": SYSROOT_PACKAGES, "wheels": wanted, "platforms": PLATFORMS,
            "helper": hashlib.sha256(HELPER.read_bytes()).hexdigest()}
    key = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]
    base = cache_dir()
    base.mkdir(parents=True, exist_ok=True)
    with (base / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _make(base, key, spec)


def _make(base: Path, key: str, spec: dict) -> Path:
    done = base / key
    if (done / "spec.json").is_file():
        print(f"isa lane: aarch64 environment cached in {done}", flush=True)
        return done
    t0 = time.monotonic()
    for old in base.iterdir():  # other keys, and a setup that was interrupted
        if old.name != ".lock":
            shutil.rmtree(old)
    part = base / f"{key}.partial"
    part.mkdir()
    _run(["mmdebstrap", "--quiet", "--variant=extract", "--architectures=arm64",
          f"--include={','.join(SYSROOT_PACKAGES)}", spec["suite"], str(part / "sysroot")]
         + ([str(SOURCES)] if SOURCES.is_file() else []), "the arm64 sysroot (mmdebstrap)")
    t1 = time.monotonic()
    tags = ["--only-binary=:all:", "--python-version", PY, "--implementation", "cp",
            "--abi", f"cp{PY.replace('.', '')}", "--abi", "abi3", "--abi", "none"]
    for p in PLATFORMS:
        tags += ["--platform", p]
    pip = [sys.executable, "-m", "pip", "--quiet", "--disable-pip-version-check"]
    _run(pip + ["download", "--no-deps", "--dest", str(part / "wheels")] + tags
         + [f"{n}=={v}" for n, v in spec["wheels"].items()], "downloading the aarch64 wheels (pip download)")
    _run(pip + ["install", "--no-deps", "--no-index", "--target", str(part / "site")] + tags
         + sorted(str(w) for w in (part / "wheels").iterdir()), "installing the aarch64 wheels (pip install)")
    shutil.rmtree(part / "wheels")
    t2 = time.monotonic()
    _run(["aarch64-linux-gnu-gcc", "-static", "-O2", "-Wall", "-o", str(part / "cpuinfo"), str(HELPER)],
         "building the cpuinfo helper")
    (part / "spec.json").write_text(json.dumps(spec, indent=1))
    part.rename(done)
    print(f"isa lane: aarch64 environment made in {time.monotonic() - t0:.0f} s (sysroot {t1 - t0:.0f} s, "
          f"{len(spec['wheels'])} wheels {t2 - t1:.0f} s) in {done}", flush=True)
    return done


def core_root(env: Path, core: str, dest: Path) -> Path:
    """A root for ``qemu-aarch64 -cpu CORE -L ROOT``: the sysroot's folders (links) and CORE's own proc/cpuinfo."""
    shutil.rmtree(dest, ignore_errors=True)
    (dest / "proc").mkdir(parents=True)
    for entry in (env / "sysroot").iterdir():
        if entry.name not in ("proc", "dev", "tmp"):  # the guest's /dev and /tmp stay the host's
            (dest / entry.name).symlink_to(entry)
    r = subprocess.run(["qemu-aarch64", "-cpu", core, str(env / "cpuinfo")], capture_output=True, text=True)
    if r.returncode != 0 or "Features" not in r.stdout:
        raise RuntimeError(f"aarch64 setup: the cpuinfo helper under {core} failed ({r.returncode}): {r.stderr}")
    (dest / "proc" / "cpuinfo").write_text(r.stdout)
    return dest


def package_view(dest: Path) -> Path:
    """A folder that imports as the installed package (pyproject's package-dir), linking the checkout's sources."""
    layout = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    shutil.rmtree(dest, ignore_errors=True)
    for package, src in sorted(layout.items(), key=lambda kv: kv[0].count(".")):
        target = dest.joinpath(*package.split("."))
        if "." not in package:
            target.mkdir(parents=True)
            for entry in (ROOT / src).iterdir():
                (target / entry.name).symlink_to(entry)
        else:  # a sub-package from elsewhere in the checkout, inside its (real) parent folder
            if target.is_symlink():
                target.unlink()
            target.symlink_to(ROOT / src)
    return dest


def native_library() -> tuple:
    """(the aarch64 native library, None), or (None, why there is none) when the cross build fails."""
    t0 = time.monotonic()
    r = subprocess.run(CROSS_BUILD, capture_output=True, text=True)
    if r.returncode == 0 and r.stdout.strip():
        print(f"isa lane: aarch64 native library {r.stdout.strip()} ({time.monotonic() - t0:.0f} s)", flush=True)
        return Path(r.stdout.strip()), None
    print(f"isa lane: the aarch64 cross build failed ({r.returncode}):\n{r.stderr[-3000:]}", flush=True)
    why = (r.stderr.strip().splitlines() or ["it printed no library"])[-1]
    return None, f"no aarch64 native library: `build.py --target aarch64 --require` failed: {why}"
