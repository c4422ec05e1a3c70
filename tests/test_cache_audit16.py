"""Audit 16 of the partial cache: a segment the system will not read, ever (no permission: another user's 0600
segment in a shared cache folder), was taken for one it would not read at that moment (too many open files) and
kept: every command said it again, computed its steps again and kept no answer. It is now unreadable as a
corrupt segment is: said once, its entries dropped and the segment taken out of the cache (or, where it cannot
be deleted, no longer pointed to), its steps stored again in a segment of this user's own."""

from __future__ import annotations

import builtins
import errno
import pathlib

import pytest

from runlog import errors, open_run
from runlog.analysis import partial_cache as P
from runlog.analysis import partial_store as PS
from test_cache_audit15 import _a_step_saved_again_in_a_segment_of_its_own, _index, _warm_equals_cold


def _refused(monkeypatch: pytest.MonkeyPatch, seg: str, code: int) -> None:
    """The system refuses to open segment ``seg`` with ``code`` (tests run as root: chmod 0600 would not)."""
    real_open = builtins.open

    def refuse(path, *args, **kwargs):  # noqa: ANN001, ANN202
        if str(path).endswith(seg):
            raise PermissionError(code, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(PS, "open", refuse, raising=False)


@pytest.mark.parametrize("code", [errno.EACCES, errno.EPERM])
def test_a_segment_without_permission_is_said_once_and_taken_out_of_the_cache(
    tmp_path, _probe_cache, monkeypatch, capsys, code
):
    root = tmp_path / "run"
    folder, seg = _a_step_saved_again_in_a_segment_of_its_own(root, _probe_cache)
    _refused(monkeypatch, seg, code)
    monkeypatch.setattr(PS, "_said", set())
    capsys.readouterr()
    _warm_equals_cold(root)  # the numbers are right
    err = capsys.readouterr().err
    assert err.count("partial cache") == 1, err
    assert "unreadable (Permission denied); rebuilding it" in err and "could not be read now" not in err
    assert "Errno" not in err  # the reason without the errno and the path the line names already
    assert not (folder / seg).exists()
    assert all(e["seg"] != seg for e in _index(folder).values())
    # The next command (another process: nothing said yet) is quiet, reuses every step and may keep its answer.
    monkeypatch.setattr(PS, "_said", set())
    troubles = errors.troubles
    _warm_equals_cold(root)
    assert "partial cache" not in capsys.readouterr().err
    assert errors.troubles == troubles
    parts = P.run_partials(open_run(root), "sample", store=PS.PartialStore.open(root))
    assert parts is not None and (parts.computed, parts.reused) == (0, 2)


def test_a_segment_without_permission_that_cannot_be_deleted_is_no_longer_read(
    tmp_path, _probe_cache, monkeypatch, capsys
):
    """Another user's segment in a folder with the sticky bit cannot be deleted either: the index stops pointing
    to it, the steps are stored in a segment of this user's own, and no later command reads it again."""
    root = tmp_path / "run"
    folder, seg = _a_step_saved_again_in_a_segment_of_its_own(root, _probe_cache)
    _refused(monkeypatch, seg, errno.EACCES)
    real_unlink = pathlib.Path.unlink

    def unlink(self, *args, **kwargs):  # noqa: ANN001, ANN202
        if self.name == seg:
            raise PermissionError(errno.EPERM, "Operation not permitted", str(self))
        return real_unlink(self, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "unlink", unlink)
    monkeypatch.setattr(PS, "_said", set())
    capsys.readouterr()
    _warm_equals_cold(root)
    assert capsys.readouterr().err.count("unreadable (Permission denied)") == 1
    assert (folder / seg).exists()  # still there, not ours to delete
    entries = _index(folder)
    assert sorted(e["step"] for e in entries.values()) == [0, 1]  # step 0 stored again,
    assert all(e["seg"] != seg for e in entries.values())  # in another segment
    monkeypatch.setattr(PS, "_said", set())
    troubles = errors.troubles
    _warm_equals_cold(root)
    assert "partial cache" not in capsys.readouterr().err and errors.troubles == troubles


def test_a_segment_the_system_would_not_read_now_is_still_kept(tmp_path, _probe_cache, monkeypatch, capsys):
    """The transient errors stay transient (audit 15's review): a stale NFS handle keeps the segment."""
    root = tmp_path / "run"
    folder, seg = _a_step_saved_again_in_a_segment_of_its_own(root, _probe_cache)
    real_open = builtins.open

    def stale(path, *args, **kwargs):  # noqa: ANN001, ANN202
        if str(path).endswith(seg):
            raise OSError(errno.ESTALE, "Stale file handle")
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(PS, "open", stale, raising=False)
    monkeypatch.setattr(PS, "_said", set())
    capsys.readouterr()
    store = PS.PartialStore.open(root)
    assert store is not None
    _, found = store.load(sorted(store.index, key=lambda eid: store.index[eid]["step"]))
    err = capsys.readouterr().err
    assert "could not be read now (Stale file handle)" in err and "unreadable" not in err
    assert [store.index[e]["step"] for e in found] == [1]  # step 0 is computed again
    assert (folder / seg).exists() and any(e["seg"] == seg for e in _index(folder).values())  # kept


def test_another_user_s_lock_file_makes_the_folder_read_only_to_this_one(tmp_path, _probe_cache, monkeypatch, capsys):
    """Every save takes the index lock: where its file is not this user's to write, nothing can be rebuilt, and
    the line says so rather than promising a rebuild that then fails."""
    import os

    root = tmp_path / "run"
    folder, seg = _a_step_saved_again_in_a_segment_of_its_own(root, _probe_cache)
    (folder / seg).write_bytes(b"garbage")
    real_access = os.access

    def access(path, mode, *args, **kwargs):  # noqa: ANN001, ANN202
        if str(path).endswith("index.lock") and mode & os.W_OK:
            return False
        return real_access(path, mode, *args, **kwargs)

    monkeypatch.setattr(PS.os, "access", access)
    monkeypatch.setattr(PS, "_said", set())
    capsys.readouterr()
    store = PS.PartialStore.open(root)
    assert store is not None
    store.load(list(store.index))
    err = capsys.readouterr().err
    assert "it cannot be rebuilt here (the cache folder is read-only)" in err and "rebuilding it" not in err
