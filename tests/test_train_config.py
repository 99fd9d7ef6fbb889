"""The training settings record: checked once when made, built the same by the CLI and the
Train widget, and the one thing train_iter and finetune_iter run."""

from __future__ import annotations

import dataclasses
import inspect

import numpy as np
import pytest

from napari_denoise.cli import build_parser, main, train_spec
from napari_denoise.engine.training.config import FinetuneSpec, TrainConfig
from napari_denoise.errors import ParameterError

BAD = [
    (TrainConfig, {"steps": 0}, "steps"),
    (TrainConfig, {"batch_size": 2.5}, "batch_size"),
    (TrainConfig, {"mode": "n3v"}, "Unknown training mode 'n3v'"),
    (TrainConfig, {"loss": "l3"}, "Unknown loss 'l3'"),
    (TrainConfig, {"mode": "n2v", "loss": "l1+ssim"}, "needs clean images"),
    (TrainConfig, {"mask_fraction": 0.5}, "mask_fraction"),
    (TrainConfig, {"blind_radius": 4}, "blind_radius"),
    (TrainConfig, {"psf_sigma": 0}, "psf_sigma"),
    (TrainConfig, {"warmup": -1}, "warmup"),
    (TrainConfig, {"val_every": 0}, "val_every"),
    (TrainConfig, {"bf16": "yes"}, "bf16"),
    (FinetuneSpec, {"patch": 8}, "patch"),
    (FinetuneSpec, {"lr": 0.0}, "lr"),
    (FinetuneSpec, {"minutes": -1.0}, "minutes"),
    (FinetuneSpec, {"val_fraction": 0.9}, "val_fraction"),
    (FinetuneSpec, {"config": "base=8"}, "config"),
]


@pytest.mark.parametrize(("record", "settings", "named"), BAD)
def test_a_bad_value_is_refused_when_the_record_is_made_in_one_sentence(record, settings, named):
    with pytest.raises(ParameterError) as err:
        record(**settings)
    message = str(err.value)
    assert named in message
    assert message.endswith(".") and "\n" not in message
    assert message.count(". ") == 0  # one sentence (';' joins its parts)


def test_the_record_is_frozen_built_by_name_and_refuses_unknown_settings():
    spec = FinetuneSpec(mode="n2v", steps=3)
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.steps = 4  # a checked record stays checked
    with pytest.raises(TypeError):
        FinetuneSpec("n2v")  # by name only
    with pytest.raises(ParameterError, match="Unknown training setting 'step'"):
        FinetuneSpec.from_dict({"step": 3})
    # A value filled in later is checked again.
    with pytest.raises(ParameterError, match="patch"):
        dataclasses.replace(spec, patch=4)
    assert isinstance(spec, TrainConfig)  # what train_iter takes


def test_train_iter_takes_the_record_and_its_keywords_build_the_same_run():
    torch = pytest.importorskip("torch")
    from napari_denoise.engine.models import build
    from napari_denoise.engine.training.datasets import NoisyOnlyDataset
    from napari_denoise.engine.training.loop import _Step, train_iter

    # The long lists are gone: the settings travel as one record.
    options = [
        p.name
        for p in inspect.signature(train_iter).parameters.values()
        if p.kind is p.KEYWORD_ONLY
    ]
    assert len(options) <= 6
    assert len(inspect.signature(_Step).parameters) <= 3

    data = NoisyOnlyDataset([np.random.default_rng(0).poisson(40, (64, 64)).astype(np.float32)])
    config = TrainConfig(mode="n2v", steps=3, batch_size=2, patch=32, seed=4, threads=1)

    def weights(*args, **kwargs):
        torch.manual_seed(0)
        gen = train_iter(build("unet", {"base": 4, "depth": 2}), data, *args, **kwargs)
        ticks = list(gen)
        assert [t.step for t in ticks] == [1, 2, 3]
        return ticks[-1].loss

    by_keywords = weights(mode="n2v", steps=3, batch_size=2, patch=32, seed=4, threads=1)
    assert weights(config) == by_keywords
    with pytest.raises(ParameterError, match="steps"):
        next(train_iter(build("unet", {"base": 4, "depth": 2}), data, TrainConfig()))


def test_the_cli_checks_the_settings_before_reading_any_file(tmp_path, capsys):
    missing = tmp_path / "not-there.tif"
    code = main(["train", str(missing), "--patch", "8"])
    err = capsys.readouterr().err
    assert code == 2 and "patch must be a whole number of at least 16, not 8" in err
    assert "Traceback" not in err and "not-there" not in err


CHOICES = [
    # (CLI options, widget choices)
    (
        "--mode n2v --start new:unet --minutes 10 --seed 7 --loss l2 --blind-radius 2 --name mine",
        {
            "mode": "n2v",
            "start": "new:unet",
            "minutes": 10,
            "seed": 7,
            "loss": "l2",
            "blind": 2,
            "name": "mine",
        },
    ),
    (
        "--steps 500 --start unet-fluo --loss l1+ssim",
        {"mode": "supervised", "start": "unet-fluo", "steps": 500, "loss": "l1+ssim"},
    ),
    (
        "--mode n2v-psf --start new:unet --steps 40 --psf-sigma 1.5 --positivity 0.5",
        {
            "mode": "n2v-psf",
            "start": "new:unet",
            "steps": 40,
            "psf_sigma": 1.5,
            "positivity": 0.5,
            "blind": None,
        },
    ),
]


@pytest.mark.gui
@pytest.mark.parametrize(("cli", "form"), CHOICES)
def test_the_cli_and_the_train_widget_build_the_same_record(make_napari_viewer, cli, form):
    pytest.importorskip("napari")
    from napari_denoise._qt import TrainWidget

    args = build_parser().parse_args(["train", "noisy.tif", *cli.split()])
    from_cli = train_spec(args)

    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((64, 64), np.float32), name="noisy")
    widget = TrainWidget(viewer)
    widget.mode.setCurrentIndex(widget.mode.findData(form["mode"]))
    widget.start_model.setCurrentIndex(widget.start_model.findData(form["start"]))
    unit = "minutes" if "minutes" in form else "steps"
    widget.budget_unit.setCurrentText(unit)
    widget.budget.setValue(form[unit])
    widget.seed.setValue(form.get("seed", 0))
    widget.loss.setCurrentIndex(widget.loss.findData(form.get("loss", "l1")))
    widget.name.setText(form.get("name", ""))
    if "blind" in form:
        widget.blind.setCurrentIndex(widget.blind.findData(form["blind"]))
    if "psf_sigma" in form:
        widget.psf_sigma.setValue(form["psf_sigma"])
        widget.positivity.setValue(form["positivity"])
    from_widget = widget.config()

    assert type(from_widget) is type(from_cli) is FinetuneSpec
    assert from_widget == from_cli


@pytest.mark.gui
def test_the_widget_refuses_a_bad_setting_before_it_starts(make_napari_viewer, monkeypatch):
    pytest.importorskip("napari")
    from napari_denoise._qt import TrainWidget
    from napari_denoise._qt import _train_widget as widget_module

    errors = []
    monkeypatch.setattr(widget_module, "show_error", errors.append)
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((64, 64), np.float32), name="noisy")
    widget = TrainWidget(viewer)
    widget.mode.setCurrentIndex(widget.mode.findData("n2v"))
    widget.extra_spec = {"patch": 8}
    assert not widget.start()
    assert not widget.runner.busy
    assert errors == [
        "Invalid training setting: patch must be a whole number of at least 16, not 8."
    ]


def test_loop_settings_given_in_python_run_and_are_written_in_the_card(user_dir, tmp_path):
    pytest.importorskip("torch")
    from napari_denoise.engine.training.card import reproduce_command
    from napari_denoise.engine.training.finetune import finetune_iter, prepare

    rng = np.random.default_rng(0)
    image = rng.poisson(40, (96, 96)).astype(np.float32)
    source = tmp_path / "noisy.npy"
    np.save(source, image)
    spec = FinetuneSpec(
        mode="n2v",
        start="new:unet",
        config={"base": 8},
        steps=2,
        patch=32,
        batch_size=2,
        threads=1,
        warmup=1,
        grad_clip=None,
    )
    assert spec.loop_changes() == {"warmup": 1, "grad_clip": None}
    prepared = prepare(spec, image, data_names=(str(source), None))
    assert prepared.run_config(2).grad_clip is None  # what train_iter runs
    assert reproduce_command(prepared, "x", 2, 1) is not None  # the file is there
    gen = finetune_iter(prepared)
    while True:
        try:
            next(gen)
        except StopIteration as done:
            training = done.value.card["training"]
            break
    assert training["loop_settings"] == {"warmup": 1, "grad_clip": None}
    assert training["optimizer"].endswith("no gradient clipping")
    assert training["command"] is None  # no CLI option repeats them: no command that would lie
