"""inspect_ai's ``eval.metadata.step`` (``inspect eval --metadata step=N``) that is there but is no integer step
(``7.5``, ``true``, ``"ten"``, ``2**63``) was read as step 0, pooled with the real step 0's log, and the note said
the log had no step. Now it is a ``wrong_type`` error naming the file and the value, and the log's samples are left
out; an integer step (``"10"`` and ``10.0`` read as 10, a negative one as it is) and a missing or null one behave as
before. Also: docs/format.md quotes the layouts note the real dumps give.

The logs are the real ones in ``../shared/realdata`` (skipped where it is absent) with their step set here; the
expected counts come from ``json`` and ``zipfile``, never from runlog's code."""

from __future__ import annotations

import json
import re
import shutil
import zipfile
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from runlog import open_run

from conftest import REALDATA, ROOT, need_realdata

SECURITY = "inspect_ai_security_guide_eval_log.json"
POPULARITY_EVAL = "inspect_ai_popularity.eval"
NO_STEP_NOTE = "inspect_ai logs carry no training step"
BAD_STEPS: list[Any] = [7.5, True, "ten", "7.5", 2**63, -(2**63) - 1]


def write_security_log(path: Path, step: Any, *, present: bool = True) -> int:
    """The real security_guide JSON log with ``eval.metadata.step`` set (or no metadata): its sample count."""
    log = json.loads((REALDATA / SECURITY).read_text(encoding="utf-8"))
    log["eval"]["metadata"] = {"step": step} if present else None
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(log), encoding="utf-8")
    return len(log["samples"])


def write_popularity_eval(path: Path, step: Any) -> int:
    """The real popularity ``.eval`` with its header's ``eval.metadata.step`` set: its count of sample members."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(REALDATA / POPULARITY_EVAL) as src, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as out:
        members = src.namelist()
        for name in members:
            data = src.read(name)
            if name == "header.json":
                header = json.loads(data)
                header["eval"]["metadata"] = {"step": step}
                data = json.dumps(header).encode()
            out.writestr(name, data)
    return sum(bool(re.fullmatch(r"samples/[^/]+\.json", n)) for n in members)


def shown(value: Any) -> str:
    """How the error names the value: its JSON (a whole number as its digits)."""
    return json.dumps(value)


def errors(run: Any) -> list[tuple[str, str, str]]:
    return [(p.path, p.kind, p.message) for p in run.problems if not p.is_warning]


@pytest.mark.parametrize("bad", BAD_STEPS, ids=repr)
def test_a_step_that_is_no_integer_is_an_error_and_its_rows_are_left_out(cli, tmp_path: Path, bad: Any) -> None:
    need_realdata(SECURITY)
    folder = tmp_path / "steps"
    at_zero = write_security_log(folder / "a.json", 0)
    at_five = write_security_log(folder / "b.json", 5)
    bad_rows = write_security_log(folder / "d.json", bad)
    run = open_run(folder)
    [(path, kind, message)] = errors(run)
    assert (path, kind) == ("d.json", "wrong_type")
    assert f"`eval.metadata.step` is {shown(bad)}" in message and f"{bad_rows} sample(s) are left out" in message
    steps = Counter(run.samples.select("step").collect()["step"].to_list())
    assert steps == {0: at_zero, 5: at_five}  # d.json's rows pooled at step 0 made step 0 twice its size
    assert not any("occur in more than one inspect_ai log" in p.message for p in run.problems)
    r = cli("inspect", folder, "--format", "json")
    assert r.exit_code == 1 and "Traceback" not in r.output
    report = json.loads(r.stdout)
    assert [(p["path"], p["kind"]) for p in report["problems"] if p["kind"] != "warning"] == [("d.json", "wrong_type")]


@pytest.mark.parametrize("bad", [7.5, True], ids=repr)
def test_the_log_alone_is_not_said_to_have_no_step(cli, tmp_path: Path, bad: Any) -> None:
    need_realdata(SECURITY)
    path = tmp_path / "only" / "d.json"
    write_security_log(path, bad)
    r = cli("inspect", path.parent)
    assert r.exit_code == 1 and "Traceback" not in r.output
    assert NO_STEP_NOTE not in r.output
    flat = " ".join(r.output.split())
    assert "d.json" in flat and "`eval.metadata.step` is" in flat and shown(bad) in flat


def test_an_eval_log_with_a_step_that_is_no_integer(tmp_path: Path) -> None:
    need_realdata(POPULARITY_EVAL)
    members = write_popularity_eval(tmp_path / "run" / "pop.eval", 2.5)
    run = open_run(tmp_path / "run")
    [(path, kind, message)] = errors(run)
    assert (path, kind) == ("pop.eval", "wrong_type")
    assert "`eval.metadata.step` is 2.5, not an integer step" in message
    assert f"the log's {members} sample(s) are left out" in message
    assert run.samples.collect().height == 0


@pytest.mark.parametrize(("given", "step"), [(5, 5), ("10", 10), (10.0, 10), (-3, -3), (2**63 - 1, 2**63 - 1)])
def test_an_integer_step_is_read(tmp_path: Path, given: Any, step: int) -> None:
    need_realdata(SECURITY)
    n = write_security_log(tmp_path / "run" / "log.json", given)
    run = open_run(tmp_path / "run")
    assert not errors(run)
    assert run.samples.select("step").collect()["step"].to_list() == [step] * n
    assert not any(NO_STEP_NOTE in f["message"] for f in run.fidelity)


@pytest.mark.parametrize("present", [False, True], ids=["no metadata", "step null"])
def test_no_step_is_step_0_and_noted(tmp_path: Path, present: bool) -> None:
    need_realdata(SECURITY)
    n = write_security_log(tmp_path / "run" / "log.json", None, present=present)
    run = open_run(tmp_path / "run")
    assert not errors(run)
    assert run.samples.select("step").collect()["step"].to_list() == [0] * n
    assert any(NO_STEP_NOTE in f["message"] for f in run.fidelity)


def _rows_per_task() -> Counter[str]:
    """Samples per task of the real inspect_ai logs, from ``json`` and ``zipfile``."""
    rows: Counter[str] = Counter()
    for path in sorted(REALDATA.glob("inspect_ai_*")):
        if path.suffix == ".json":
            log = json.loads(path.read_text(encoding="utf-8"))
            rows[log["eval"]["task"]] += len(log["samples"])
        else:
            with zipfile.ZipFile(path) as z:
                task = json.loads(z.read("header.json"))["eval"]["task"]
                rows[task] += sum(bool(re.fullmatch(r"samples/[^/]+\.json", n)) for n in z.namelist())
    return rows


def _said(counts: Counter[str]) -> str:
    return ", ".join(f"{k} ({n} rows)" for k, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def test_the_docs_quote_the_layouts_note_the_real_dumps_give(cli, tmp_path: Path) -> None:
    need_realdata("verifiers_math_python_gpt5nano_results.jsonl", SECURITY, POPULARITY_EVAL)
    tasks = _rows_per_task()
    lines = (REALDATA / "verifiers_math_python_gpt5nano_results.jsonl").read_text(encoding="utf-8").splitlines()
    layouts = Counter({"inspect_ai": sum(tasks.values()), "verifiers": sum(bool(s.strip()) for s in lines)})
    whole = (
        f"split eval holds samples of 2 layouts, {_said(layouts)}, pooled in every figure as one run's (loose files "
        f"side by side in a folder are one run); its inspect_ai samples are of 2 envs (tasks), {_said(tasks)}: pass "
        "one file or folder to see one apart, or --by env"
    )
    alone = (
        f"this run's inspect_ai samples are of 2 envs (tasks), {_said(tasks)}, pooled in every figure as one run's "
        "(loose files side by side in a folder are one run): --by env to see each apart"
    )
    r = cli("summarize", REALDATA)
    assert whole in " ".join(r.stderr.split())
    logs = tmp_path / "logs"
    logs.mkdir()
    for path in REALDATA.glob("inspect_ai_*"):
        shutil.copy(path, logs / path.name)
    r = cli("summarize", logs)
    assert alone in " ".join(r.stderr.split())
    docs = " ".join((ROOT / "docs" / "format.md").read_text(encoding="utf-8").split())
    assert f"`{whole}`" in docs and f"`{alone}`" in docs


# -- re-audit (r_steps F2): white space around a step's text is the space ``int`` reads, nothing else -----------


@pytest.mark.parametrize(
    "given",
    ["\x1c10", "10\x1f", "\x1d10\x1e", " 10 ", "\u300010\n", "\x8510"],
    ids=lambda v: ascii(v),
)
def test_a_step_with_a_separator_around_it_is_an_error_not_a_crash(tmp_path: Path, given: str) -> None:
    """``"\\x1c10"`` made the log unreadable (``could not be read as inspect_ai: ValueError``): ``str.strip`` takes
    the separators \\x1c-\\x1f as space, ``int`` refuses them. A step is read where ``int`` reads the text (Unicode
    white space around it), else it is the documented ``wrong_type`` error naming the value."""
    need_realdata(SECURITY)
    n = write_security_log(tmp_path / "run" / "log.json", given)
    try:
        truth: int | None = int(given)  # the independent truth: Python's own reading of the text
    except ValueError:
        truth = None
    run = open_run(tmp_path / "run")
    steps = run.samples.select("step").collect()["step"].to_list()
    if truth is None:
        [(path, kind, message)] = errors(run)
        assert (path, kind) == ("log.json", "wrong_type")
        assert f"`eval.metadata.step` is {shown(given)}, not an integer step" in message
        assert f"the log's {n} sample(s) are left out" in message and steps == []
    else:
        assert not errors(run) and steps == [truth] * n
