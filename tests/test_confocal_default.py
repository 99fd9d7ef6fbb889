"""Issue 23: the confocal split of the shipped recipe and the default's selection rule."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


@pytest.fixture(scope="module")
def scripts():
    sys.path.insert(0, str(SCRIPTS))
    try:
        import select_default
        import train_shipped

        yield train_shipped, select_default
    finally:
        sys.path.remove(str(SCRIPTS))


def test_confocal_fields_are_split_whole_and_the_test_field_is_never_read(scripts):
    ts, _ = scripts
    train, val = set(ts.CONFOCAL_TRAIN_FOVS), set(ts.CONFOCAL_VAL_FOVS)
    assert train and val and not train & val
    assert train | val == set(ts.CONFOCAL_FOVS) == {*range(2, 19), 20}
    assert 19 not in train | val and 1 not in train | val
    # every capture of a training field trains, none of a validation field
    assert ts.CONFOCAL_CAPTURES == 10
    assert set(ts.CONFOCAL_VAL_CAPTURES) <= set(range(10))


def test_the_shipped_default_recipe_starts_from_a_recipe_that_exists(scripts):
    ts, _ = scripts
    spec = ts.SPECS["unet-fluo"]
    assert spec.init in ts.SPECS and ts.SPECS[spec.init].init is None
    assert spec.init_steps and spec.val_confocal and all(spec.confocal_mix)
    assert ts.SPECS[spec.init].config == spec.config  # the same network is fine-tuned


def test_select_default_rule(scripts):
    _, sd = scripts
    floor = sd.W2S_FLOOR
    # the best mean of W2S and confocal wins among models at or above the W2S floor
    w2s = {"gaussian": floor - 1.3, "a": floor + 0.05, "b": floor + 0.01, "c": floor + 0.5}
    conf = {"gaussian": 39.3, "a": 39.4, "b": 39.9, "c": 30.0}
    assert sd.choose(w2s, conf) == "b"
    # below the floor a model cannot win on confocal alone
    w2s["b"] = floor - 0.01
    assert sd.choose(w2s, conf) == "a"
    # a model above the floor but below the classical default's mean loses to it
    conf = {"gaussian": 45.0, "a": 39.4, "b": 39.9, "c": 30.0}
    assert sd.choose(w2s, conf) == "gaussian"
    # without any model above the floor, W2S alone decides (the rule before issue 23)
    w2s = {"gaussian": 33.0, "a": floor - 0.1, "b": floor - 0.2, "c": 32.0}
    assert sd.choose(w2s, conf) == "a"


def test_a_missing_start_is_trained_first_into_the_checkpoint_folder(
    scripts, tmp_path, monkeypatch
):
    ts, _ = scripts
    spec = ts.SPECS["unet-fluo"]
    calls = []
    monkeypatch.setattr(ts, "train_one", lambda s, a: calls.append((s.name, a.steps, a.out)))
    args = ts.argparse.Namespace(checkpoints=tmp_path, out=tmp_path / "zoo", steps=2500)
    assert ts.start_model(spec, args) == tmp_path / f"{spec.init}.json"
    assert calls == [(spec.init, spec.init_steps, tmp_path)]
    # once there, it is read, not trained again
    (tmp_path / f"{spec.init}.json").write_text("{}")
    calls.clear()
    assert ts.start_model(spec, args) == tmp_path / f"{spec.init}.json"
    assert calls == []
