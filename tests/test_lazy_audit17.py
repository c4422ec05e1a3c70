"""``runlog._lazy.LazyModule`` asks the real module on every lookup: a function patched after first use (a test's
spy) is the one runlog calls. A copy of the module's attributes at first use made a test of "never called" pass
whenever an earlier test in its process had used the module (``test_inspect_audit12``'s spy on
``pyarrow.parquet.read_table`` passed in CI while the text it guards against was read)."""

from __future__ import annotations

import types

from runlog._lazy import LazyModule


def test_a_function_patched_after_first_use_is_the_one_called(monkeypatch):
    lazy = LazyModule("json")
    assert lazy.dumps([1]) == "[1]"  # first use: the module is imported
    import json

    monkeypatch.setattr(json, "dumps", lambda obj: "patched")
    assert lazy.dumps([1]) == "patched"


def test_it_is_a_module_and_imports_on_first_use():
    lazy = LazyModule("colorsys")
    assert isinstance(lazy, types.ModuleType) and "_module" not in lazy.__dict__
    assert lazy.rgb_to_hsv(1.0, 0.0, 0.0) == (0.0, 1.0, 1.0)
    assert lazy.__dict__["_module"].__name__ == "colorsys"
