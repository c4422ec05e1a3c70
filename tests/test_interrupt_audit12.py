"""Audit 12 (a new user's walk-through): Ctrl-C inside a polars read and while the command line loads, and the
note of ``render-trajectory --no-think`` about texts cut.

The Ctrl-C checks run the command line in a child interpreter (the runlog this test imports: its ``src``), with
a real SIGINT: sent by the process to itself at the exact moment of a callback polars makes from Rust, or while
a module of the command line is imported; and from outside at several delays. Expected figures of the note come
from the run's files read with pyarrow, never from runlog's reading."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

import runlog

from conftest import ROOT, SAMPLE_RUNS

RUN = SAMPLE_RUNS / "debate_grpo"


def _env(**extra: str) -> dict[str, str]:
    """The environment of a child that imports this test's runlog, with Rust's backtraces on (as on the audit's
    machine: a panic printed 191 lines)."""
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    src = str(Path(runlog.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join([src, env.get("PYTHONPATH", "")])
    env["RUST_BACKTRACE"] = "1"
    env.update(extra)
    return env


# Sends SIGINT to the process from inside the first callback that polars' ``collect_schema`` makes from Rust
# (``pl.Field`` built for a struct column: its caller frame is ``collect_schema``, the Rust frames between are
# not Python's), then runs the command line as the ``runlog`` console script does. The wrapper runs as polars'
# own code (its module's name), so that the signal is taken where the audit saw it: in ``Field.__init__``. The
# marker file says the signal was sent there.
SEND_IN_FIELD = """
import os, signal, sys
import polars.datatypes.classes as classes
code = '''
def field(self, *args, **kwargs):
    if not os.path.exists(os.environ["MARKER"]) and sys._getframe(1).f_code.co_name == "collect_schema":
        open(os.environ["MARKER"], "w").close()
        os.kill(os.getpid(), signal.SIGINT)
    build(self, *args, **kwargs)
'''
space = {"__name__": classes.__name__, "os": os, "signal": signal, "sys": sys, "build": classes.Field.__init__}
exec(code, space)
classes.Field.__init__ = space["field"]
"""
INSIDE_POLARS = (
    SEND_IN_FIELD
    + """
sys.argv = ["runlog", *sys.argv[1:]]
from runlog.__main__ import main
main()
"""
)


@pytest.mark.parametrize(
    "args", [["doctor", str(RUN), "--no-cache"], ["summarize", str(RUN), "--by", "role", "--no-cache"]]
)
def test_a_ctrl_c_inside_a_callback_polars_makes_from_rust_is_an_interrupt(tmp_path: Path, args: list[str]) -> None:
    """The interrupt raised inside the callback became a Rust panic: its message and backtrace (175 lines), then
    ``Error: ...: reading the run failed: called `Result::unwrap()` on an `Err` value: PyErr { type: <class
    'KeyboardInterrupt'> ...``, exit 1 (problems in the data). Now one line, ``Error: interrupted``, exit 130."""
    marker = tmp_path / "sent"
    p = subprocess.run(
        [sys.executable, "-c", INSIDE_POLARS, *args],
        capture_output=True,
        text=True,
        env=_env(MARKER=str(marker)),
        timeout=120,
    )
    assert marker.exists(), "no callback from Rust in collect_schema: the test no longer reaches its moment"
    assert (p.returncode, p.stderr) == (130, "Error: interrupted\n"), (p.returncode, p.stderr[-1500:])


LIBRARY_INSIDE_POLARS = (
    SEND_IN_FIELD
    + """
import runlog
try:
    runlog.summarize(runlog.open_run(sys.argv[1]), ["role"])
    print("finished")
except KeyboardInterrupt:
    print("KeyboardInterrupt")
except BaseException as exc:
    print(type(exc).__name__, str(exc)[:300])
"""
)


def test_a_library_caller_gets_the_ctrl_c_as_keyboard_interrupt(tmp_path: Path) -> None:
    """Without the command line's handler (a notebook), polars still panics (Rust prints that), but the read
    no longer takes the panic for a failed read: ``KeyboardInterrupt``, where it raised ``DataError: reading the
    run failed``."""
    marker = tmp_path / "sent"
    p = subprocess.run(
        [sys.executable, "-c", LIBRARY_INSIDE_POLARS, str(RUN)],
        capture_output=True,
        text=True,
        env=_env(MARKER=str(marker), RUST_BACKTRACE="0"),
        timeout=120,
    )
    assert marker.exists() and p.stdout.strip() == "KeyboardInterrupt", (p.stdout, p.stderr[-1500:])


# Sends SIGINT while a module of the command line is being imported (``MODULE``, looked for on sys.meta_path),
# entering through the console script's function or ``python -m runlog``.
WHILE_IMPORTING = """
import os, runpy, signal, sys
class Interrupt:
    def find_spec(self, name, path=None, target=None):
        if name == os.environ["MODULE"]:
            sys.meta_path.remove(self)
            os.kill(os.getpid(), signal.SIGINT)
        return None
sys.meta_path.insert(0, Interrupt())
sys.argv = ["runlog", *sys.argv[1:]]
if os.environ["ENTRY"] == "script":
    from runlog.__main__ import main
    main()
else:
    runpy.run_module("runlog", run_name="__main__", alter_sys=True)
"""


@pytest.mark.parametrize("entry", ["script", "module"])
@pytest.mark.parametrize("module", ["runlog.cli.app", "typer", "runlog.cli.inspect_cmd"])
def test_a_ctrl_c_while_the_command_line_loads_is_one_line(entry: str, module: str) -> None:
    """A Ctrl-C in the first tenths of a second (the imports of typer, rich and the commands) printed a 16-20
    line traceback of the imports; now ``Error: interrupted``, exit 130, by the console script and by
    ``python -m runlog``."""
    p = subprocess.run(
        [sys.executable, "-c", WHILE_IMPORTING, "inspect", str(RUN)],
        capture_output=True,
        text=True,
        env=_env(MODULE=module, ENTRY=entry),
        timeout=120,
    )
    assert (p.returncode, p.stderr) == (130, "Error: interrupted\n"), (p.returncode, p.stderr[-1500:])


def test_the_console_script_enters_where_ctrl_c_is_taken_first() -> None:
    """``runlog`` is ``runlog.__main__:main``, which takes Ctrl-C before it imports the command line (the test
    above); ``runlog.cli.app:main`` was entered after those imports."""
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    scripts = text.split("[project.scripts]\n", 1)[1].split("\n\n", 1)[0]
    assert scripts.strip() == 'runlog = "runlog.__main__:main"'


# The command line as the console script runs it, saying on stderr when its handler of Ctrl-C is in place (the
# interpreter's own start and ``import runlog`` come before: nothing of runlog's can take a Ctrl-C there).
READY_THEN_MAIN = """
import sys
import runlog.process as process
said = []
def ready():
    if not said:
        said.append(1)
        sys.stderr.write("ready\\n")
        sys.stderr.flush()
take = getattr(process, "take_interrupts", None)
if take is not None:
    process.take_interrupts = lambda: (take(), ready())
else:
    ready()
sys.argv = ["runlog", *sys.argv[1:]]
from runlog.__main__ import main
main()
"""


def test_a_ctrl_c_from_outside_at_any_moment_of_doctor_is_an_interrupt() -> None:
    """SIGINT from outside at delays that span the imports, the listing, the read and the findings of
    ``runlog doctor``: each run ends as an interrupt (one line, exit 130), or had finished (its own exit code,
    no error; or the signal's own death as the interpreter ends, without a word). The audit saw a panic and
    exit 1 in about 1 of 30 such tries; the test above reaches that moment every time."""
    for delay in (0.0, 0.05, 0.1, 0.2, 0.3, 0.45, 0.6, 0.8):
        p = subprocess.Popen(
            [sys.executable, "-c", READY_THEN_MAIN, "doctor", str(RUN), "--no-cache"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=_env(),
        )
        assert p.stderr is not None
        assert p.stderr.readline() == "ready\n"
        time.sleep(delay)
        p.send_signal(signal.SIGINT)
        err = p.communicate(timeout=120)[1]
        # Finished: its own exit code and no error; or killed by the signal itself in the interpreter's last
        # moments (Python puts the default action back as it ends: the shell's 130, nothing printed).
        finished = p.returncode in (0, 1, -signal.SIGINT) and "Error" not in err and "panicked" not in err
        said = (p.returncode, err) == (130, "Error: interrupted\n")
        assert finished or said, (delay, p.returncode, err[-1500:])
        assert "Traceback" not in err and "panicked" not in err


def _longest_text(run: Path) -> int:
    """The longest message content or reasoning in the run's sample files (pyarrow)."""
    longest = 0
    for f in sorted(run.glob("samples/*/*.parquet")):
        for row in pq.read_table(f, columns=["messages"]).to_pylist():
            for m in row["messages"] or []:
                longest = max(longest, len(m["content"] or ""), len(m["reasoning"] or ""))
    return longest


def test_no_think_says_nothing_of_a_cut_where_nothing_was_cut(cli) -> None:
    """``render-trajectory --no-think`` said "texts longer than 20,000 characters are cut" of the sample run,
    whose longest text is 292 characters: hiding the reasoning lowered the characters shown, read as a cut."""
    assert _longest_text(RUN) < 20_000
    for extra in ([], ["--no-think"], ["--no-think", "--role", "verifier"]):
        r = cli("render-trajectory", RUN, "--worst", "3", *extra)
        assert r.exit_code == 0 and "truncated" not in r.stdout
        assert "are cut on the terminal" not in r.stderr, (extra, r.stderr)


def test_no_think_still_says_a_cut_of_what_it_shows(cli, tmp_path: Path) -> None:
    """A 30,000-character ``<think>`` block and a short answer: cut (and said) when shown, nothing to say when
    ``--no-think`` hides it; a 30,000-character answer is cut and said either way."""
    thinking = "<think>" + "t" * 30_000 + "</think>short answer"
    long_answer = "<think>brief</think>" + "A" * 30_000
    with runlog.RunWriter(tmp_path / "think", name="think", durable=False) as w:
        w.log_samples(0, [{"reward": 1.0, "completion": thinking, "sample_id": "s"}])
    with runlog.RunWriter(tmp_path / "answer", name="answer", durable=False) as w:
        w.log_samples(0, [{"reward": 1.0, "completion": long_answer, "sample_id": "s"}])
    note = "texts longer than 20,000 characters are cut on the terminal"
    r = cli("render-trajectory", tmp_path / "think")
    assert r.exit_code == 0 and "truncated" in r.stdout and note in r.stderr
    r = cli("render-trajectory", tmp_path / "think", "--no-think")
    assert r.exit_code == 0 and "short answer" in r.stdout and "truncated" not in r.stdout
    assert note not in r.stderr, r.stderr
    for extra in ([], ["--no-think"]):
        r = cli("render-trajectory", tmp_path / "answer", *extra)
        assert r.exit_code == 0 and "truncated" in r.stdout and note in r.stderr, (extra, r.stderr)


def test_an_error_made_of_the_panic_is_said_as_the_interrupt(capsys: pytest.CaptureFixture[str]) -> None:
    """What a Ctrl-C inside polars became on its way up (the panic, or an error worded on it or raised from it)
    ends as ``interrupted``, exit 130; an error met after a Ctrl-C but not made of it is said as itself."""
    import typer

    from runlog.cli.common import handle_errors
    from runlog.errors import DataError

    panic_text = (
        "called `Result::unwrap()` on an `Err` value: PyErr { type: <class 'KeyboardInterrupt'>, "
        "value: KeyboardInterrupt(), traceback: None }"
    )
    made: list[BaseException] = [DataError("run", f"reading the run failed: {panic_text}")]
    try:
        raise KeyboardInterrupt
    except KeyboardInterrupt as interrupt:
        wrapped = OSError("the read was cancelled")
        wrapped.__cause__ = interrupt
        made.append(wrapped)
        after = DataError("run", "the state could not be written")
        after.__context__ = interrupt  # met while handling it, not made of it
    for exc in made:
        with pytest.raises(typer.Exit) as ended, handle_errors():
            raise exc
        assert ended.value.exit_code == 130 and capsys.readouterr().err == "Error: interrupted\n"
    with pytest.raises(typer.Exit) as ended, handle_errors():
        raise after
    assert ended.value.exit_code == 1 and capsys.readouterr().err == "Error: run: the state could not be written\n"


def test_importing_runlog_installs_no_signal_handler() -> None:
    """The handler of Ctrl-C is the command line's (``runlog.__main__.main``), not a library import's: a
    notebook or a trainer that imports runlog, its command line included, keeps its own."""
    code = (
        "import signal\n"
        "before = signal.getsignal(signal.SIGINT)\n"
        "import runlog, runlog.__main__, runlog.cli.app, runlog.process\n"
        "print(signal.getsignal(signal.SIGINT) is before)\n"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env(), timeout=120)
    assert p.stdout.strip() == "True", p.stderr[-1500:]


# A read of several seconds (60 sorts of a million rows), Ctrl-C'd after 0.3 s, in a process that took Ctrl-C
# as the command line does (before polars is imported). Says whether the interrupt came out of ``collect`` (the
# read cancelled) or only after it.
LONG_READ = """
import os, signal, sys, threading, time
from runlog.process import take_interrupts
take_interrupts()
import polars as pl
lf = pl.LazyFrame({"a": pl.int_range(0, 1_000_000, eager=True)})
for _ in range(60):
    lf = lf.with_columns((pl.col("a") * 7 % 1000).alias("b")).sort("b").with_columns(pl.col("a").cum_sum().over("b"))
threading.Timer(0.3, lambda: os.kill(os.getpid(), signal.SIGINT)).start()
start, done = time.monotonic(), False
try:
    lf.select(pl.col("a").sum()).collect()
    done = True
    time.sleep(60)
except KeyboardInterrupt:
    where = "after the read" if done else "the read cancelled"
while True:
    try:
        time.sleep(0.5)  # polars' handler and runlog's both raise: the second lands here
        break
    except KeyboardInterrupt:
        pass
print(where, round(time.monotonic() - start, 1), flush=True)
"""


def test_a_ctrl_c_still_cancels_a_long_read() -> None:
    """Polars' own handler of SIGINT cancels a read in progress (its ``collect`` raises the interrupt): keeping
    the interrupt out of polars' callbacks must not keep it out of polars altogether, where a long read (8 s
    here) ran to its end before the Ctrl-C took."""
    p = subprocess.run([sys.executable, "-c", LONG_READ], capture_output=True, text=True, env=_env(), timeout=120)
    assert p.stdout.startswith("the read cancelled"), (p.stdout, p.stderr[-1500:])
