"""What the command line does when things go wrong: nothing wrong may pass silently.

Faults found by an adversarial run of the CLI, one test each: read-only or full disks
(fault 12), one output given twice (17), ``--json -`` mixing text into the JSON (18), a
second Ctrl-C at exit (20), terminal escape sequences in user text (21), labels outside
the convention (9, as the user sees it). Tests run as root, where chmod does not stop
writes, so read-only and full disks are simulated at ``os.open``.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from napari_calf._cli.main import main


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    from _engine_data import write_tiny_dataset  # tests/_engine_data.py

    return write_tiny_dataset(tmp_path_factory.mktemp("relio") / "data", 3, seed=5)


def _refuse_creating_files_in(monkeypatch, folder: Path, code: int) -> None:
    real_open = os.open

    def refusing_open(path, flags, *a, **kw):
        if str(path).startswith(str(folder)) and flags & os.O_CREAT:
            raise OSError(code, os.strerror(code), str(path))
        return real_open(path, flags, *a, **kw)

    monkeypatch.setattr(os, "open", refusing_open)


# --------------------------------------------------------------------------- fault 12


def test_predict_refuses_a_read_only_output_folder_before_any_work(tmp_path, monkeypatch,
                                                                  capsys) -> None:
    """The run folder does not even exist: the output is checked first, not after inference."""
    out_dir = tmp_path / "ro"
    out_dir.mkdir()
    _refuse_creating_files_in(monkeypatch, out_dir, errno.EROFS)
    code = main(["predict", str(tmp_path / "no-run"), str(tmp_path / "case"),
                 "--out", str(out_dir / "pred.nii.gz"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 1
    assert str(out_dir / "pred.nii.gz") in err and "read-only" in err
    assert "unexpected" not in err and ".tmp" not in err


def test_analyze_json_on_a_full_disk_names_the_file(data, tmp_path, monkeypatch, capsys) -> None:
    out_dir = tmp_path / "full"
    out_dir.mkdir()
    _refuse_creating_files_in(monkeypatch, out_dir, errno.ENOSPC)
    code = main(["analyze", str(data), "--json", str(out_dir / "a.json"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 1
    assert str(out_dir / "a.json") in err and "no space left" in err
    assert "unexpected" not in err and ".tmp" not in err


def test_phantom_on_a_full_disk_leaves_no_half_case_behind(tmp_path, monkeypatch, capsys) -> None:
    real_open = os.open

    def full_after_first_file(path, flags, *a, **kw):
        # the case folder and its t1 exist by then: the half case the user was left with
        if flags & os.O_CREAT and Path(path).name.startswith(".CALF-Phantom-00000_t1ce"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return real_open(path, flags, *a, **kw)

    monkeypatch.setattr(os, "open", full_after_first_file)
    out = tmp_path / "ds"
    code = main(["phantom", str(out), "--cases", "2", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 1
    assert "CALF-Phantom-00000_t1ce.nii.gz" in err and "no space left" in err
    assert "unexpected" not in err
    assert not out.exists()  # it created the folder, so it takes it away again


def test_phantom_failure_keeps_what_was_there_before(tmp_path, monkeypatch, capsys) -> None:
    out = tmp_path / "ds"
    out.mkdir()
    (out / "mine.txt").write_text("a user's file")
    _refuse_creating_files_in(monkeypatch, out / "CALF-Phantom-00000", errno.ENOSPC)
    assert main(["phantom", str(out), "--cases", "1", "--overwrite", "--no-progress"]) == 1
    assert sorted(p.name for p in out.iterdir()) == ["mine.txt"]


# --------------------------------------------------------------------------- fault 17


@pytest.mark.parametrize("same", ["identical", "via ..", "via a link"])
def test_predict_refuses_one_file_for_two_outputs(tmp_path, capsys, same) -> None:
    target = tmp_path / "x.nii.gz"
    other = {"identical": target, "via ..": tmp_path / "sub" / ".." / "x.nii.gz",
             "via a link": tmp_path / "link" / "x.nii.gz"}[same]
    (tmp_path / "sub").mkdir()
    (tmp_path / "link").symlink_to(tmp_path)
    code = main(["predict", str(tmp_path / "no-run"), str(tmp_path / "case"), "--out",
                 str(target), "--probabilities", str(other), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 1
    assert "--out" in err and "--probabilities" in err and "same file" in err
    assert not target.exists()


# --------------------------------------------------------------------------- fault 18


def test_json_to_stdout_is_pure_json_and_the_report_goes_to_stderr(data, capsys) -> None:
    assert main(["analyze", str(data), "--json", "-", "--no-progress"]) == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out)  # nothing but the JSON document
    assert result["cases"] == 3
    assert f"Selected transform: {result['selection']['transform']}" in captured.err


# --------------------------------------------------------------------------- fault 20

_DOUBLE_CTRL_C = """
import atexit, os, signal, sys, time
import napari_calf._cli.phantom as phantom

def run(args):
    os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C during the work ...
    time.sleep(5)

def at_exit():
    os.kill(os.getpid(), signal.SIGINT)  # ... and again while the program exits
    time.sleep(5)

phantom.run = run
atexit.register(at_exit)
from napari_calf._cli.main import main
sys.argv = ["napari-calf", "phantom", "unused"]
sys.exit(main())
"""


@pytest.mark.skipif(os.name != "posix", reason="POSIX signals")
def test_a_second_ctrl_c_at_exit_is_quiet() -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run([sys.executable, "-c", _DOUBLE_CTRL_C], env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 130
    assert "Traceback" not in done.stderr and "KeyboardInterrupt" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines == ["napari-calf phantom: interrupted", "napari-calf: interrupted again; exiting"]


# --------------------------------------------------------------------------- fault 21


def test_escape_sequences_in_a_rule_note_do_not_reach_the_terminal(data, tmp_path, capsys) -> None:
    from napari_calf.calf.rules import Rule
    from napari_calf.calf.rules_io import save_rules

    rules = save_rules([Rule("ln", "paper", "\x1b[2J\x1b[31mwiped\x1b[0m\x07")], tmp_path / "r.json")
    assert main(["analyze", str(data), "--rules", str(rules), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out
    assert "\\x1b[2J" in out and "wiped" in out  # shown, harmlessly


def test_escape_sequences_in_a_path_do_not_reach_the_terminal(tmp_path, capsys) -> None:
    assert main(["analyze", str(tmp_path / "\x1b]0;owned\x07data"), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "\x1b" not in err and "\x07" not in err and "owned" in err


# --------------------------------------------------------------------------- fault 9


def test_analyze_names_a_label_file_with_values_outside_the_convention(tmp_path, capsys) -> None:
    from _engine_data import write_tiny_dataset

    root = write_tiny_dataset(tmp_path / "data", 2, seed=1)
    seg = root / "Tiny-001" / "Tiny-001_seg.nii.gz"
    img = nib.load(seg)
    labels = np.asanyarray(img.dataobj).copy()
    labels[labels == 4] = 7
    nib.save(nib.Nifti1Image(labels, img.affine), seg)
    assert main(["analyze", str(root), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert str(seg) in err and "label value(s) 7" in err


# --------------------------------------------------------------------------- fault 8


@pytest.mark.parametrize("mode", ["train", "plan"])
def test_compare_refuses_a_folder_of_someone_elses_files(data, tmp_path, capsys, mode) -> None:
    out = tmp_path / "results"
    out.mkdir()
    (out / "README.md").write_text("# my thesis notes\n")
    (out / "summary.csv").write_text("patient,score\n")
    extra = ["--plan", str(tmp_path / "plan.json")] if mode == "plan" else []
    code = main(["compare", str(data), "--out", str(out), "--losses", "calf,bce", "--archs",
                 "unet", "--seeds", "1", "--epochs", "1", "--device", "cpu", "--no-progress",
                 *extra])
    err = capsys.readouterr().err
    assert code == 1
    assert str(out) in err and "not a study" in err and "--overwrite" in err
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "summary.csv"]
    assert (out / "README.md").read_text() == "# my thesis notes\n"
