"""Output files (issue 17, items 2 and 9): devices, FIFOs and symlinks are not replaced by regular files, an output
that is an input is refused, writes are flushed before the rename, and a killed writer's temporary file is removed
by a later write once stale."""
import errno
import io
import os
import stat
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

from helpers import make_qllstm
from qlstm_edge import load_checkpoint, save_checkpoint
from qlstm_edge._io import STALE_AFTER, OutputPathError, atomic_path
from qlstm_edge.cli import main
from qlstm_edge.exporters import export_onnx


def write_bytes(path, data):
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)


def mknod_or_skip(path, kind, major, minor):
    try:
        os.mknod(path, kind | 0o666, os.makedev(major, minor))
    except PermissionError:
        pytest.skip("making device nodes needs root (CAP_MKNOD)")
    return path


def read_fifo_in_background(fifo):
    got = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()), daemon=True)
    reader.start()
    return reader, got


def test_fifo_is_written_in_place_and_its_reader_gets_the_data(tmp_path, exported):
    fifo = tmp_path / "out.npy"
    os.mkfifo(fifo)
    reader, got = read_fifo_in_background(fifo)
    write_bytes(fifo, b"through the pipe")
    reader.join(timeout=30)
    assert got == [b"through the pipe"]
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)  # still a FIFO, not replaced by a regular file
    x = tmp_path / "x.npy"
    np.save(x, np.array([[1, 2, 3]], dtype=np.int64))
    reader, got = read_fifo_in_background(fifo)
    result = CliRunner().invoke(main, ["stream", str(exported[1]["step"]), "--input", str(x), "--output", str(fifo),
                                       "--native", "off"])
    reader.join(timeout=30)
    assert result.exit_code == 0, result.output
    assert got and np.load(io.BytesIO(got[0])).shape[:2] == (1, 3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.npy", "x.npy"]


def test_a_symlink_is_followed_and_stays_a_link(tmp_path):
    (tmp_path / "real").mkdir()
    real = tmp_path / "real" / "m.safetensors"
    real.write_bytes(b"old contents")
    link = tmp_path / "m.safetensors"
    link.symlink_to(os.path.join("real", "m.safetensors"))  # relative, as `ln -s` makes it
    m = make_qllstm()
    save_checkpoint(m, link)
    assert link.is_symlink() and os.readlink(link) == os.path.join("real", "m.safetensors")
    assert load_checkpoint(real).state_dict().keys() == m.state_dict().keys()
    chain = tmp_path / "chain.onnx"  # a link to a link to a missing file: the final target is created
    (tmp_path / "hop.onnx").symlink_to(tmp_path / "real" / "new.onnx")
    chain.symlink_to("hop.onnx")
    export_onnx(m, chain)
    assert chain.is_symlink() and (tmp_path / "hop.onnx").is_symlink()
    onnx.checker.check_model(onnx.load(str(tmp_path / "real" / "new.onnx")))
    assert not [p for d in (tmp_path, tmp_path / "real") for p in d.iterdir() if p.name.startswith(".")]


def test_symlink_loop_is_an_error_not_a_replacement(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.symlink_to("b")
    b.symlink_to("a")
    with pytest.raises(OSError) as e:
        write_bytes(a, b"x")
    assert e.value.errno == errno.ELOOP
    assert a.is_symlink() and b.is_symlink()


def test_a_character_device_is_written_in_place(tmp_path):
    dev = os.stat("/dev/null").st_rdev
    null = mknod_or_skip(tmp_path / "null", stat.S_IFCHR, os.major(dev), os.minor(dev))
    export_onnx(make_qllstm(), null)
    st = os.lstat(null)
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == os.stat("/dev/null").st_rdev
    assert sorted(p.name for p in tmp_path.iterdir()) == ["null"]


def test_a_full_device_reports_its_write_error_and_stays_a_device(tmp_path):
    full = mknod_or_skip(tmp_path / "full", stat.S_IFCHR, 1, 7)  # Linux's /dev/full
    with pytest.raises(OSError) as e:
        save_checkpoint(make_qllstm(), full)
    assert e.value.errno == errno.ENOSPC
    assert stat.S_ISCHR(os.lstat(full).st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["full"]


def test_block_devices_directories_and_sockets_are_refused_before_writing(tmp_path):
    import socket

    disk = mknod_or_skip(tmp_path / "disk", stat.S_IFBLK, 7, 0)
    with pytest.raises(OutputPathError, match="is a block device"):
        write_bytes(disk, b"x")
    assert stat.S_ISBLK(os.lstat(disk).st_mode)
    with pytest.raises(OutputPathError, match="is a directory"):
        write_bytes(tmp_path, b"x")
    sock_path = tmp_path / "s"
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(sock_path))
        with pytest.raises(OutputPathError, match="not a regular file, character device or FIFO"):
            write_bytes(sock_path, b"x")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["disk", "s"]


def test_a_proc_fd_link_is_written_through_not_resolved(tmp_path):
    """/dev/stdout and /proc/self/fd/N name an open file: here one whose name is gone ('f (deleted)')."""
    f = tmp_path / "f"
    fd = os.open(f, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        f.unlink()
        write_bytes(f"/proc/self/fd/{fd}", b"through the fd")
        assert os.pread(fd, 100, 0) == b"through the fd"
    finally:
        os.close(fd)
    assert list(tmp_path.iterdir()) == []


def test_writes_are_flushed_to_disk_before_the_rename(tmp_path, monkeypatch):
    events = []
    fsync, replace = os.fsync, os.replace

    def spy_fsync(fd):
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        fsync(fd)

    def spy_replace(src, dst):
        events.append(("replace", str(src)))
        replace(src, dst)

    monkeypatch.setattr(os, "fsync", spy_fsync)
    monkeypatch.setattr(os, "replace", spy_replace)
    save_checkpoint(make_qllstm(), tmp_path / "m.safetensors")
    tmp = next(path for kind, path in events if kind == "replace")
    assert events == [("fsync", tmp), ("replace", tmp), ("fsync", str(tmp_path))]


def dead_pid():
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_stale_temporaries_of_the_target_are_removed_and_live_writers_are_not(tmp_path):
    old = time.time() - STALE_AFTER - 60
    gone, me = dead_pid(), os.getpid()
    names = {
        f".m.onnx.pid{gone}.abcd1234.tmp": (old, False),  # writer gone, untouched for long: removed
        ".m.onnx.k2j_x9q1.tmp": (old, False),  # an older version's name (no PID), long untouched: removed
        f".m.onnx.pid{gone}.fresh123.tmp": (time.time(), True),  # may be another machine's writer, still busy
        f".m.onnx.pid{me}.live1234.tmp": (old, True),  # a writer still running here (this process)
        f".m.onnx.pid1.init1234.tmp": (old, True),  # pid 1 runs: kept however old
        f".n.onnx.pid{gone}.abcd1234.tmp": (old, True),  # another target's file
        f".m.onnx.x.pid{gone}.abcd1234.tmp": (old, True),  # the target 'm.onnx.x''s file
    }
    for name, (mtime, _) in names.items():
        (tmp_path / name).write_bytes(b"partial")
        os.utime(tmp_path / name, (mtime, mtime))
    write_bytes(tmp_path / "m.onnx", b"new")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["m.onnx", *[n for n, (_, kept) in names.items() if kept]])


WRITER = textwrap.dedent("""
    import sys, time
    from qlstm_edge._io import atomic_path
    with atomic_path(sys.argv[1]) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(b"half of a model")
        print(tmp, flush=True)
        time.sleep(600)
""")


def test_a_killed_writers_temporary_file_is_removed_by_a_later_write(tmp_path):
    target = tmp_path / "m.onnx"
    p = subprocess.Popen([sys.executable, "-c", WRITER, str(target)], stdout=subprocess.PIPE, text=True)
    tmp = p.stdout.readline().strip()
    p.kill()
    p.wait()
    assert os.path.basename(tmp).startswith(f".m.onnx.pid{p.pid}.")  # SIGKILL: nothing could clean up
    write_bytes(target, b"v1")
    assert os.path.exists(tmp)  # modified moments ago: it might be another machine's writer, kept for now
    os.utime(tmp, (time.time() - STALE_AFTER - 1,) * 2)
    write_bytes(target, b"v2")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"] and target.read_bytes() == b"v2"


CLI_EXPORT_THAT_HANGS = textwrap.dedent("""
    import sys, time
    import onnx
    from qlstm_edge.cli import main

    def slow_save(proto, path):
        with open(path, "wb") as fh:
            fh.write(b"half of a model")
        print("writing", flush=True)
        time.sleep(600)

    onnx.save_model = slow_save
    main(["export", sys.argv[1], "-o", sys.argv[2]])
""")


def test_sigterm_during_cli_export_removes_the_temporary_file(tmp_path):
    ck = save_checkpoint(make_qllstm(), tmp_path / "m.safetensors")
    p = subprocess.Popen([sys.executable, "-c", CLI_EXPORT_THAT_HANGS, str(ck), str(tmp_path / "m.onnx")],
                         stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "writing"
    p.terminate()
    assert p.wait(timeout=60) == 143
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors"]


@pytest.fixture
def files(tmp_path, exported):
    ck = save_checkpoint(make_qllstm(), tmp_path / "m.safetensors")
    x = tmp_path / "x.npy"
    np.save(x, np.zeros((1, 3), dtype=np.int64))
    (tmp_path / "cfg.json").write_text('{"hidden_size": 8}')
    os.link(ck, tmp_path / "hard.safetensors")
    (tmp_path / "soft.safetensors").symlink_to("m.safetensors")
    return {"ck": ck, "x": x, "onnx": exported[1]["step"], "cfg": tmp_path / "cfg.json",
            "hard": tmp_path / "hard.safetensors", "soft": tmp_path / "soft.safetensors"}


@pytest.mark.parametrize("args, option, label", [
    (["export", "{ck}", "-o", "{ck}"], "'-o' / '--output'", "input CHECKPOINT"),
    (["export", "{ck}", "-o", "{hard}"], "'-o' / '--output'", "input CHECKPOINT"),
    (["export", "{ck}", "-o", "{soft}"], "'-o' / '--output'", "input CHECKPOINT"),
    (["stream", "{onnx}", "--input", "{x}", "--output", "{x}"], "'--output'", "--input file"),
    (["stream", "{onnx}", "--input", "{x}", "--output", "{onnx}"], "'--output'", "MODEL"),
    (["quantize-report", "{ck}", "--steps", "10", "--json", "{soft}"], "'--json'", "input CHECKPOINT"),
    (["train", "qllstm", "-c", "{cfg}", "-o", "{cfg}", "--max-steps", "1"], "'-o' / '--output'", "--config file"),
])
def test_an_output_that_is_an_input_is_refused(files, args, option, label):
    before = {k: p.read_bytes() for k, p in files.items()}
    result = CliRunner().invoke(main, [a.format(**files) for a in args])
    assert result.exit_code == 2, result.output
    assert f"Invalid value for {option}" in result.output and f"is the same file as the {label}" in result.output
    assert "writing it would destroy the input" in result.output
    assert {k: p.read_bytes() for k, p in files.items()} == before


def test_train_refuses_a_vocabulary_path_that_is_an_input(tmp_path):
    cfg = tmp_path / "m.vocab.json"
    cfg.write_text('{"hidden_size": 8}')
    result = CliRunner().invoke(main, ["train", "qllstm", "-c", str(cfg), "-o", str(tmp_path / "m.safetensors"),
                                       "-d", "sentiment-documents", "--data-options", '{"n": 8}', "--max-steps", "1",
                                       "--quiet"])
    assert result.exit_code == 2 and "its vocabulary file" in result.output
    assert cfg.read_text() == '{"hidden_size": 8}' and not (tmp_path / "m.safetensors").exists()


def test_outputs_that_are_not_inputs_still_work(files, tmp_path):
    result = CliRunner().invoke(main, ["stream", str(files["onnx"]), "--input", str(files["x"]), "--output",
                                       str(tmp_path / "y.npy"), "--native", "off"])
    assert result.exit_code == 0, result.output
    assert np.load(tmp_path / "y.npy").shape[:2] == (1, 3)


def test_export_onnx_refuses_to_write_over_the_checkpoint_it_exports(files):
    before = files["ck"].read_bytes()
    with pytest.raises(ValueError, match="is the checkpoint it exports"):
        export_onnx(files["soft"], files["ck"])
    assert files["ck"].read_bytes() == before
