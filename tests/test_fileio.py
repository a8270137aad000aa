"""mnist_jax.fileio: atomic writes, and a failed write as one `OutputError` naming path and reason.

Failures are simulated without root-defeated permissions (the tests may run as root, for whom a
read-only folder is writable): by monkeypatching the system calls to raise the `OSError` a full
or read-only disk gives, and, for a real failure of the kernel, by a file-size limit
(RLIMIT_FSIZE) in a subprocess.
"""

import errno
import json
import math
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest

from mnist_jax import fileio, rundir
from mnist_jax.errors import MnistJaxError, OutputError

REPO = Path(__file__).resolve().parents[1]


def names(folder: Path) -> list[str]:
    """Everything in `folder`, hidden temporary files included."""
    return sorted(p.name for p in folder.iterdir())


# --- writing ------------------------------------------------------------------------------------


def test_write_bytes_text_and_json(tmp_path):
    assert fileio.write_bytes_atomic(tmp_path / "a.bin", b"\x00\x01") == tmp_path / "a.bin"
    assert fileio.write_text_atomic(tmp_path / "b.txt", "héllo\n") == tmp_path / "b.txt"
    assert fileio.write_json_atomic(tmp_path / "c.json", {"x": [1, 2]}) == tmp_path / "c.json"
    assert (tmp_path / "a.bin").read_bytes() == b"\x00\x01"
    assert (tmp_path / "b.txt").read_bytes() == "héllo\n".encode()
    assert (tmp_path / "c.json").read_text() == '{\n  "x": [\n    1,\n    2\n  ]\n}\n'
    assert names(tmp_path) == ["a.bin", "b.txt", "c.json"]


def test_save_hands_a_binary_file_to_the_callback(tmp_path):
    path = fileio.save(tmp_path / "s.bin", lambda file: file.write(b"abc"))
    assert path.read_bytes() == b"abc"


def test_replaces_an_existing_file_and_leaves_no_temporary_file(tmp_path):
    target = tmp_path / "metrics.json"
    target.write_text("old")
    fileio.write_json_atomic(target, {"new": True})
    assert json.loads(target.read_text()) == {"new": True}
    assert names(tmp_path) == ["metrics.json"]


def test_creates_missing_parent_folders(tmp_path):
    target = tmp_path / "a" / "b" / "report.md"
    fileio.write_text_atomic(target, "# run\n")
    assert target.read_text() == "# run\n" and names(target.parent) == ["report.md"]


def test_new_files_get_the_usual_permissions_not_mkstemps_0600(tmp_path):
    old = os.umask(0o022)
    try:
        path = fileio.write_text_atomic(tmp_path / "x", "x")
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644


def test_json_refuses_nan_and_leaves_the_old_file(tmp_path):
    target = tmp_path / "metrics.json"
    target.write_text("old")
    with pytest.raises(ValueError):
        fileio.write_json_atomic(target, {"loss": math.nan})
    assert target.read_text() == "old" and names(tmp_path) == ["metrics.json"]


def test_rundir_re_exports_the_same_functions():
    assert rundir.write_text_atomic is fileio.write_text_atomic
    assert rundir.write_json_atomic is fileio.write_json_atomic


# --- failures -----------------------------------------------------------------------------------


def raiser(code: int):
    def fail(*args, **kwargs):
        raise OSError(code, os.strerror(code))

    return fail


@pytest.mark.parametrize(
    ("call", "code"),
    [("fsync", errno.ENOSPC), ("open", errno.EROFS), ("open", errno.EACCES)],
)
def test_os_error_becomes_one_line_output_error_and_the_old_file_stays(
    tmp_path, monkeypatch, call, code
):
    target = tmp_path / "metrics.json"
    target.write_text("old")
    monkeypatch.setattr(fileio.os, call, raiser(code))
    with pytest.raises(OutputError) as info:
        fileio.write_json_atomic(target, {"new": True})
    monkeypatch.undo()
    assert str(info.value) == f"cannot write {target}: {os.strerror(code)}"
    assert isinstance(info.value, MnistJaxError) and "\n" not in str(info.value)
    assert info.value.path == str(target) and info.value.errno == code
    assert target.read_text() == "old"
    assert names(tmp_path) == ["metrics.json"]  # the temporary file was removed


def test_disk_full_while_writing_removes_the_temporary_file(tmp_path, monkeypatch):
    def full(file):
        file.write(b"partial")
        file.flush()
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with pytest.raises(OutputError, match="No space left on device"):
        fileio.save(tmp_path / "plot.png", full)
    assert names(tmp_path) == []


@pytest.mark.parametrize("error", [RuntimeError("bug in a writer"), KeyboardInterrupt()])
def test_other_exceptions_pass_through_and_remove_the_temporary_file(tmp_path, error):
    target = tmp_path / "plot.png"
    target.write_bytes(b"old")

    def broken(file):
        file.write(b"partial")
        raise error

    with pytest.raises(type(error)):
        fileio.save(target, broken)
    assert target.read_bytes() == b"old" and names(tmp_path) == ["plot.png"]


def test_a_parent_that_is_a_file(tmp_path):
    (tmp_path / "run").write_text("not a folder")
    with pytest.raises(OutputError, match="cannot write .*run"):
        fileio.write_text_atomic(tmp_path / "run" / "report.md", "x")
    assert names(tmp_path) == ["run"]


def test_a_target_that_is_a_folder(tmp_path):
    (tmp_path / "metrics.json").mkdir()
    with pytest.raises(OutputError, match="Is a directory"):
        fileio.write_json_atomic(tmp_path / "metrics.json", {})
    assert names(tmp_path) == ["metrics.json"]


def test_a_real_write_failure_from_the_kernel_keeps_the_old_file(tmp_path):
    """RLIMIT_FSIZE makes the kernel refuse writes past 1000 bytes (EFBIG), as a full disk would."""
    target = tmp_path / "big.bin"
    target.write_bytes(b"old")
    script = textwrap.dedent(
        f"""
        import resource, signal, sys
        from mnist_jax import fileio
        from mnist_jax.errors import OutputError
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # else the kernel kills the process
        resource.setrlimit(resource.RLIMIT_FSIZE, (1000, 1000))
        try:
            fileio.write_bytes_atomic({str(target)!r}, b"x" * 100_000)
        except OutputError as error:
            print(error)
            sys.exit(2)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2, result.stderr
    assert result.stdout.strip() == f"cannot write {target}: {os.strerror(errno.EFBIG)}"
    assert target.read_bytes() == b"old" and names(tmp_path) == ["big.bin"]


def test_a_command_reports_a_full_disk_in_one_line_with_status_2(tmp_path, monkeypatch, capsys):
    from experiments.cli import run_main

    # run_main installs a one-line warnings printer; keep it from outliving this test.
    monkeypatch.setattr(warnings, "showwarning", warnings.showwarning)
    monkeypatch.setattr(fileio.os, "fsync", raiser(errno.ENOSPC))

    def main(argv):
        rundir.write_json_atomic(tmp_path / "metrics.json", {"test_accuracy": 0.9})
        return 0

    with pytest.raises(SystemExit) as info:
        run_main(main, "baseline", [])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err == (
        f"baseline: error: cannot write {tmp_path / 'metrics.json'}: No space left on device\n"
    )
