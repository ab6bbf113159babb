"""--out replaces only what the toolchain wrote; a bundle's symbolic links are never followed into a
build; an output under a path nobody can write is a clear error before any work (issue 13: 1, 2, 10)."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from toolchain.cli import main
from toolchain.errors import ToolchainError
from toolchain.fsutil import atomic_directory, atomic_write_json, copy_tree
from toolchain.outdir import MARKER


def _artifact(path, files=("a.txt",)):
    with atomic_directory(path, "test") as tmp:
        for name in files:
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp / name).write_text(name)
    return path


def _leftovers(directory):
    return [p.name for p in directory.iterdir() if p.name.endswith((".tmp", ".old"))]


# ----------------------------------------------------------------------------------------------
# 1. --out never deletes what the user owns
# ----------------------------------------------------------------------------------------------
def test_train_refuses_a_directory_it_did_not_write(tmp_path, data_root, capsys):
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "notes.txt").write_text("mine")
    argv = ["train", "--out", str(notes), "--epochs", "1", "--data-dir", str(data_root), "--quiet"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "refusing to delete it" in err and "notes.txt" in err and "--force" in err
    assert "Traceback" not in err
    assert (notes / "notes.txt").read_text() == "mine"


def test_build_refuses_a_directory_it_did_not_write(tmp_path, trained_bundle, data_root, capsys):
    out = tmp_path / "out"
    (out / "sub").mkdir(parents=True)
    (out / "sub" / "thesis.tex").write_text("mine")
    argv = ["build", "--target", "host", "--bundle", str(trained_bundle), "--out", str(out)]
    assert main([*argv, "--data-dir", str(data_root), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "refusing to delete it" in err and "sub/thesis.tex" in err
    assert (out / "sub" / "thesis.tex").read_text() == "mine"


def test_out_dot_is_refused_cleanly(tmp_path, data_root, capsys, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    for out in (".", str(tmp_path)):
        assert main(["train", "--out", out, "--epochs", "1", "--data-dir", str(data_root), "--quiet"]) == 2
        err = capsys.readouterr().err
        assert "current directory" in err and "Traceback" not in err
    assert list(work.iterdir()) == [] and _leftovers(tmp_path) == []


def test_an_artifact_is_replaced_but_not_one_the_user_added_to(tmp_path):
    out = _artifact(tmp_path / "art", ["a.txt", "sub/b.txt"])
    marker = json.loads((out / MARKER).read_text())
    assert marker["kind"] == "test" and marker["files"] == ["a.txt", "sub/b.txt"]
    _artifact(out, ["c.txt"])  # the toolchain's own directory: replaced
    assert sorted(p.name for p in out.iterdir()) == [MARKER, "c.txt"]
    atomic_write_json(out / "verify.json", {"x": 1})  # the toolchain adds a report: still its own
    _artifact(out, ["d.txt"])
    (out / "notes.txt").write_text("mine")  # the user adds a file: no longer replaceable
    with pytest.raises(ToolchainError, match=r"now also holds notes\.txt"):
        _artifact(out, ["e.txt"])
    assert (out / "notes.txt").read_text() == "mine"
    # --force replaces it all
    with atomic_directory(out, "test", force=True) as tmp:
        (tmp / "f.txt").write_text("f")
    assert sorted(p.name for p in out.iterdir()) == [MARKER, "f.txt"]
    assert _leftovers(tmp_path) == []


def test_empty_and_legacy_directories_are_replaced(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    _artifact(empty)
    legacy = tmp_path / "legacy"  # a bundle written before the marker existed
    legacy.mkdir()
    (legacy / "bundle.json").write_text(json.dumps({"format": "toolchain-bundle", "version": 1}))
    (legacy / "weights.npz").write_bytes(b"x")
    _artifact(legacy)
    assert (legacy / "a.txt").is_file() and not (legacy / "weights.npz").exists()
    fake = tmp_path / "fake"  # a descriptor of another format is not ours
    fake.mkdir()
    (fake / "bundle.json").write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(ToolchainError, match="did not write"):
        _artifact(fake)


def test_a_failed_run_leaves_the_previous_artifact(tmp_path):
    out = _artifact(tmp_path / "art", ["old.txt"])
    with pytest.raises(RuntimeError), atomic_directory(out, "test") as tmp:
        (tmp / "new.txt").write_text("new")
        raise RuntimeError("boom")
    assert (out / "old.txt").is_file() and _leftovers(tmp_path) == []


def test_out_under_a_path_nobody_can_write_fails_before_training(tmp_path, data_root, capsys):
    # /sys refuses file creation even to root (os.access says yes there): the check must create one.
    target = "/sys/toolchain-test-bundle" if os.path.isdir("/sys/kernel") else "/proc/toolchain-test"
    assert main(["train", "--out", target, "--epochs", "1", "--data-dir", str(data_root)]) == 2
    err = capsys.readouterr().err
    assert "not writable" in err or "cannot be created" in err
    assert "Traceback" not in err and "loading" not in err  # refused before loading data


def test_build_out_must_not_overlap_the_bundle(tmp_path, trained_bundle, capsys):
    bundle = tmp_path / "b"
    shutil.copytree(trained_bundle, bundle)
    for out in (bundle, bundle / "build", tmp_path):
        assert main(["build", "--target", "host", "--bundle", str(bundle), "--out", str(out), "--quiet"]) == 2
        assert "overlap" in capsys.readouterr().err
    assert sorted(p.name for p in bundle.iterdir()) == sorted(p.name for p in trained_bundle.iterdir())


# ----------------------------------------------------------------------------------------------
# 2. symbolic links in a bundle are refused, never followed
# ----------------------------------------------------------------------------------------------
def test_build_refuses_a_bundle_with_a_link_to_a_file_elsewhere(tmp_path, trained_bundle, data_root, capsys):
    secret = tmp_path / "private" / "id_ed25519"
    secret.parent.mkdir()
    secret.write_text("PRIVATE KEY")
    bundle = tmp_path / "bundle"
    shutil.copytree(trained_bundle, bundle)
    (bundle / "notes").symlink_to(secret)
    out = tmp_path / "build"
    argv = ["build", "--target", "host", "--bundle", str(bundle), "--out", str(out), "--quiet"]
    assert main([*argv, "--data-dir", str(data_root)]) == 2
    err = capsys.readouterr().err
    assert "symbolic link to" in err and "outside" in err and "Traceback" not in err
    assert not out.exists() and _leftovers(tmp_path) == []


def test_copy_tree_refuses_every_kind_of_link_and_special_file(tmp_path):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "w.npz").write_bytes(b"data")
    copy_tree(src, tmp_path / "ok")
    assert (tmp_path / "ok" / "sub" / "w.npz").read_bytes() == b"data"
    cases = {
        "dangling": (lambda p: p.symlink_to(tmp_path / "nowhere"), "dangling symbolic link"),
        "loop": (lambda p: p.symlink_to(p), "loops"),
        "dir": (lambda p: p.symlink_to("/etc", target_is_directory=True), "symbolic link to /etc"),
        "inside": (lambda p: p.symlink_to(src / "sub" / "w.npz"), "refuses links"),
        "fifo": (lambda p: os.mkfifo(p), "not a regular file"),
    }
    for i, (name, (make, message)) in enumerate(cases.items()):
        entry = src / "sub" / name
        make(entry)
        with pytest.raises(ToolchainError, match=message):
            copy_tree(src, tmp_path / f"copy{i}")
        entry.unlink()
