"""Audit 14 of ``watch`` and ``doctor --follow`` (a new user's walk), and of ``az://`` without credentials.

- With no credentials, ``watch s3://b/r`` and ``doctor s3://b/r --follow`` listed again for ever (4 s, 8 s, ...
  30 s), where ``inspect`` exits 1 at once: no credentials come to a running process. ``--once`` said "trying
  again in 4 s" and then gave up.
- ``watch --split evl`` on a run with an ``eval`` split was a note and exit 0; every other command says "did you
  mean 'eval'?" and exits 2.
- ``az://`` without an account said obstore's "Account must be specified" with exit 2, where s3:// and gs://
  say which variables give the credentials, exit 1."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

import runlog.run as run_module
from runlog.errors import DataError
from runlog.watch import Backoff, LiveRun, Watcher

from conftest import SAMPLE_RUNS

NO_CREDENTIALS = (
    "no usable credentials (set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE, or --storage-option)"
)


def _watcher(tmp_path: Path, results: list, **kw: float) -> Watcher:
    """A watcher of an empty folder whose listings give ``results`` in turn (an exception is raised), the last
    one for ever."""

    def lister():
        r = results.pop(0) if len(results) > 1 else results[0]
        if isinstance(r, Exception):
            raise r
        return r, {}

    return Watcher(LiveRun(tmp_path), lister, Backoff(1.0, 30.0), clock=lambda: 0.0, **kw)


def test_no_credentials_at_the_first_listing_ends_the_watch_at_once(tmp_path: Path) -> None:
    """No ``--idle-exit``, no ``--timeout``: the end is ``unreachable`` at the first listing, with the error; no
    note that it will try again."""
    w = _watcher(tmp_path, [DataError("s3://b/r", NO_CREDENTIALS)])
    events, _ = w.poll()
    assert events == []
    assert w.ended() == "unreachable"
    assert NO_CREDENTIALS in w.unreachable_message()


def test_a_store_out_of_reach_is_still_tried_again(tmp_path: Path) -> None:
    w = _watcher(tmp_path, [DataError("s3://b/r", "cannot reach the object store (connection failed)")])
    events, delay = w.poll()
    assert [e.kind for e in events] == ["note"] and "trying again in 2 s" in events[0].data["message"]
    assert w.ended() is None


def test_credentials_refused_after_a_listing_succeeded_are_tried_again(tmp_path: Path) -> None:
    """Credentials that worked (then expired, or a token being refreshed): the watch goes on trying."""
    w = _watcher(tmp_path, [{}, DataError("s3://b/r", NO_CREDENTIALS)])
    w.poll()
    events, _ = w.poll()
    assert [e.kind for e in events] == ["note"]
    assert w.ended() is None


def test_once_gives_up_without_saying_it_tries_again(tmp_path: Path) -> None:
    """``--once`` (an idle window of 0) while the store is out of reach: the end (``unreachable``) says the
    error; no "trying again in 2 s" before it."""
    w = _watcher(tmp_path, [DataError("s3://b/r", "cannot reach the object store")], idle_exit=0.0)
    events, _ = w.poll()
    assert events == []
    assert w.ended() == "unreachable" and "cannot reach the object store" in w.unreachable_message()


@pytest.mark.parametrize("command", [["watch", "--no-doctor"], ["doctor", "--follow"]])
def test_the_commands_end_at_once_with_exit_1(tmp_path: Path, cli, monkeypatch, command: list[str]) -> None:
    """``watch`` and ``doctor --follow`` without ``--idle-exit``: exit 1 at the first listing, the ``end``
    event ``unreachable`` naming the missing credentials, no note. (``--timeout`` only bounds the old
    behaviour, which listed again until then.)"""
    run = tmp_path / "run"
    run.mkdir()

    def no_credentials(*_a: object, **_k: object) -> None:
        raise DataError("s3://b/r", NO_CREDENTIALS)

    monkeypatch.setattr(run_module, "list_files", no_credentials)
    t = time.monotonic()
    r = cli(command[0], run, *command[1:], "--interval", "0.5", "--timeout", "6", "--format", "json")
    assert r.exit_code == 1, r.output
    events = [json.loads(line) for line in r.stdout.splitlines()]
    assert [e["event"] for e in events] == ["end"], r.stdout
    assert events[0]["reason"] == "unreachable" and NO_CREDENTIALS in events[0]["message"]
    assert time.monotonic() - t < 5


def test_a_near_miss_of_a_split_is_a_usage_error(cli) -> None:
    r = cli("watch", SAMPLE_RUNS / "debate_grpo", "--split", "evl", "--once", "--no-doctor")
    assert r.exit_code == 2, r.output
    assert "Error: --split 'evl': this run has split(s) eval, train (did you mean 'eval'?)" in r.output
    r = cli("watch", SAMPLE_RUNS / "debate_grpo", "--split", "Eval", "--once", "--no-doctor")
    assert r.exit_code == 2 and "(did you mean 'eval'?)" in r.output


def test_a_split_not_written_yet_is_still_a_note(cli) -> None:
    """A split like none of the run's (``test``, written later by the trainer) is waited for, as before."""
    r = cli("watch", SAMPLE_RUNS / "debate_grpo", "--split", "test", "--once", "--no-doctor")
    assert r.exit_code == 0, r.output
    assert "note: no step of split test yet (this run has: eval, train)" in r.output


def test_azure_without_an_account_is_no_usable_credentials(cli, monkeypatch) -> None:
    """As s3:// and gs://: which variables give the account, exit 1 (docs/scaling.md's table)."""
    import os

    for name in list(os.environ):
        if name.startswith("AZURE_"):
            monkeypatch.delenv(name)
    r = cli("inspect", "az://container/r")
    assert r.exit_code == 1, r.output
    assert r.output.strip() == (
        "Error: az://container: no usable credentials "
        "(set AZURE_STORAGE_ACCOUNT_NAME and AZURE_STORAGE_ACCOUNT_KEY, or --storage-option)"
    )
