"""``runlog doctor``'s errors about a threshold found while the run is read name the option it came from: a
``format_spec`` none of whose roles speaks, given in ``--config FILE``, was said as ``--set format_spec=...``, an
option the user never typed."""

from __future__ import annotations

from pathlib import Path

from runlog.analysis.doctor_config import DoctorConfig
from runlog.writer import RunWriter


def _run(root: Path) -> Path:
    """Twelve steps of four samples in which only the solver speaks."""
    with RunWriter(root, durable=False) as w:
        for step in range(12):
            msgs = [{"role": "user", "content": "Q?"}, {"role": "assistant", "name": "solver", "content": "a"}]
            w.log_samples(step, [{"reward": 1.0, "group_id": "0", "messages": msgs} for _ in range(4)])
    return root


def _typo_spec(tmp_path: Path) -> Path:
    spec = tmp_path / "typo.toml"
    spec.write_text('name = "m"\nmatch = \'\\s*<think>.*</answer>\\s*\'\nroles = ["solvr"]\n')
    return spec


def test_a_silent_spec_from_config_is_said_under_config(tmp_path: Path, cli) -> None:
    run, spec = _run(tmp_path / "run"), _typo_spec(tmp_path)
    config = tmp_path / "doctor.toml"
    config.write_text(f"[doctor]\nformat_spec = {str(spec)!r}\n")
    res = cli("doctor", run, "--config", config)
    assert res.exit_code == 2, (res.stdout, res.stderr)
    [line] = res.stderr.strip().splitlines()
    assert line.startswith(f"Error: --config {config}: format_spec={spec}: "), line
    assert "--set" not in line and "did you mean 'solver'?" in line and "format_drift" in line, line


def test_a_silent_spec_from_set_is_said_under_set(tmp_path: Path, cli) -> None:
    run, spec = _run(tmp_path / "run"), _typo_spec(tmp_path)
    res = cli("doctor", run, "--set", f"format_spec={spec}")
    assert res.exit_code == 2, (res.stdout, res.stderr)
    [line] = res.stderr.strip().splitlines()
    assert line.startswith(f"Error: --set format_spec={spec}: "), line


def test_a_later_set_overrides_the_config_origin(tmp_path: Path) -> None:
    config = tmp_path / "doctor.toml"
    config.write_text('format_spec = "open-r1"\nkl_ratio = 20\n')
    cfg = DoctorConfig.from_sources(config, ["format_spec=trl-think"])
    assert cfg.option("format_spec") == "--set format_spec=trl-think"
    assert cfg.option("kl_ratio") == f"--config {config}: kl_ratio=20.0"
    assert cfg.option("min_z") == "min_z=4.0 (the default; --set min_z=... to change it)"
    # Not a threshold: the names, the copy's fields and equality are the thresholds' alone.
    assert "_origins" not in DoctorConfig.names() and "_origins_" not in DoctorConfig.names()
    assert cfg == DoctorConfig(format_spec="trl-think", kl_ratio=20.0)
