"""The benchmark report (benchmarks/report.py): sections written from benchmarks' JSON."""

import json

from napari_denoise.bench import _report_module

REPORT = _report_module(__file__)  # benchmarks/report.py of this checkout
_training_markdown = REPORT._training_markdown


def _record(gains: dict, **extra) -> dict:
    rows = {name: {"gain": g} for name, g in gains.items()}
    values = list(gains.values())
    return {"rows": rows, "mean_gain": sum(values) / len(values), "min_gain": min(values)} | extra


def test_proxy_table_marks_types_not_run_and_picks_the_best_under_the_protocol(tmp_path):
    proxy = {
        "lr=3e-4": _record({"a": 1.2, "b": 0.2}, minutes=2.0, captures=4),
        "lr=1e-3": _record({"a": 0.9, "b": 0.3}, minutes=2.0, captures=4),
        # Better mean, but on one type only and with 4 times the time: never "best".
        "lr=3e-4 (8 min)": _record({"b": 0.9}, minutes=8.0, captures=4),
        "lr=3e-4 (32 captures)": _record({"a": 2.0, "b": 2.0}, minutes=2.0, captures=32),
    }
    path = tmp_path / "training.json"
    path.write_text(json.dumps({"finetune_proxy": proxy}))
    text = "\n".join(_training_markdown(path))
    assert "| recipe | a | b | mean | min |" in text
    assert "| `lr=3e-4 (8 min)` | \u2014 | +0.90 | +0.90 | +0.90 |" in text
    assert "| `lr=1e-3` | +0.90 | +0.30 | +0.60 | +0.30 |" in text
    assert "under the benchmark's protocol: `lr=3e-4`" in text


def test_n2v_start_section_states_the_measured_differences(tmp_path):
    row = {"noisy": 20.0, "start": 34.0, "n2v2_new": 32.0, "n2v_from_start": 33.5}
    record = {
        "start": "unet-fluo",
        "minutes": 2.0,
        "date": "2026-11-23 08:56",
        "rows": {"w2s009_0": row | {"blind_radius": 0, "steps": [10, 10]}},
        "mean": row,
    }
    path = tmp_path / "training.json"
    path.write_text(json.dumps({"n2v_start": record}))
    text = "\n".join(_training_markdown(path))
    assert "| w2s009_0 | 20.00 | 34.00 | 32.00 | 33.50 | 1 px |" in text
    assert "Noise2Void from `unet-fluo` scores +1.50 dB against N2V2" in text
    assert "scores 0.50 dB higher still" in text
    # Where training on the image wins, the report does not claim the opposite.
    record["mean"] = record["rows"]["w2s009_0"] = row | {"n2v_from_start": 35.0, "blind_radius": 0}
    path.write_text(json.dumps({"n2v_start": record}))
    assert "higher still" not in "\n".join(_training_markdown(path))


def test_n2v_from_a_shipped_model_counts_the_types_it_improves(tmp_path):
    rows = {
        "A": {"noisy": 20.0, "start": 30.0, "n2v": 31.0, "gaussian": 29.0, "steps": 5},
        "B": {"noisy": 20.0, "start": 30.0, "n2v": 29.0, "gaussian": 29.0, "steps": 5},
        "C": {"noisy": 20.0, "start": 30.0, "n2v": 30.5, "gaussian": 29.0, "steps": 5},
    }
    record = {
        "mode": "n2v",
        "start": "unet-fluo",
        "minutes_per_type": 4.0,
        "threads": 1,
        "date": "2026-11-23 10:00",
        "rows": rows,
    }
    path = tmp_path / "training.json"
    path.write_text(json.dumps({"n2v_from_start": record}))
    text = "\n".join(_training_markdown(path))
    assert "| A | 20.00 | 30.00 | 31.00 | 29.00 | 1 px | 5 |" in text
    assert "beats `unet-fluo` as shipped on 2 of 3 types (+0.17 dB on average)" in text


def test_the_default_models_self_ensemble_is_benched_only_when_named():
    from napari_denoise.bench import _variants
    from napari_denoise.engine.methods import default_method

    name = default_method().name
    everything = {v.label: dict(v.params) for v in _variants(None)}
    assert everything[f"{name}+ens8"] == {"ensemble": 8}
    assert everything[name] == {}
    # Naming the model runs it once per image; the 8x slower ensemble must be asked for.
    assert [v.label for v in _variants([name])] == [name]
    assert [v.label for v in _variants([f"{name}+ens8"])] == [f"{name}+ens8"]


def test_fmd_brightness_finds_each_captures_scale_and_the_psnr_it_allows():
    import numpy as np

    from napari_denoise.bench import fmd_brightness
    from napari_denoise.engine.metrics import psnr

    rng = np.random.default_rng(0)
    gt = rng.uniform(10, 200, (64, 64))
    pairs = [
        ("A", 1.1 * gt + rng.normal(0, 5, gt.shape), gt),  # 10% brighter than the average
        ("A", 0.9 * gt + rng.normal(0, 5, gt.shape), gt),
        ("B", gt + rng.normal(0, 5, gt.shape), gt),  # as bright: no bound worth the name
    ]
    found = fmd_brightness(pairs)
    assert abs(found["A"]["slope_max"] - 1.1) < 0.01 and abs(found["A"]["slope_min"] - 0.9) < 0.01
    brighter = psnr(gt, np.clip(1.1 * gt, 0, 255), data_range=255)
    assert abs(found["A"]["bound_psnr_min"] - brighter) < 0.5
    assert found["B"]["bound_psnr"] > found["A"]["bound_psnr"] + 15


def test_the_brightness_table_lists_every_type_and_the_bound():
    _brightness_markdown = REPORT._brightness_markdown

    kinds = ["Confocal_X", "TwoPhoton_Y"]
    found = {
        "Confocal_X": {
            "slope_min": 0.98,
            "slope_max": 1.02,
            "bound_psnr": 50.0,
            "bound_psnr_min": 45.0,
        },
        "TwoPhoton_Y": {
            "slope_min": 0.8,
            "slope_max": 1.2,
            "bound_psnr": 33.9,
            "bound_psnr_min": 30.7,
        },
        "all": {"bound_psnr": 41.95},
    }
    text = "\n".join(_brightness_markdown({"fmd": {}, "fmd_brightness": found}, kinds, ["X", "Y"]))
    assert "| brightness a (min-max) | 0.98-1.02 | 0.80-1.20 | |" in text
    assert "| bound, PSNR dB (mean of 4) | 50.0 | 33.9 | 42.0 |" in text
    assert "| bound, worst capture | 45.0 | 30.7 | |" in text
    assert _brightness_markdown({"fmd": {}}, kinds, ["X", "Y"]) == []


def test_longer_fine_tuning_runs_are_shown_beside_the_protocol(tmp_path):
    def row(default, finetuned, steps):
        return {"noisy": 25.0, "default": default, "finetuned": finetuned, "steps": steps}

    ft = {
        "start": "m",
        "minutes_per_type": 2.0,
        "threads": 1,
        "date": "d",
        "rows": {"A": row(30.0, 30.3, 900), "B": row(31.0, 32.5, 900)},
    }
    longer = {"minutes_per_type": 10.0, "date": "e", "rows": {"A": row(30.0, 30.25, 4000)}}
    path = tmp_path / "training.json"
    path.write_text(json.dumps({"finetune": ft, "finetune_longer": longer}))
    text = "\n".join(_training_markdown(path))
    assert "| type | gain in 2 min | gain in 10 min | steps |" in text
    assert "| A | +0.30 | +0.25 | 4000 |" in text
    assert "| B |" not in text.split("gain in 10 min")[1]  # not run longer: no row


def test_rewriting_the_report_keeps_the_sections_other_scripts_wrote(tmp_path, monkeypatch):
    doc = tmp_path / "benchmarks.md"
    kept = "<!-- memory:begin -->\n## Memory\n\n| a |\n<!-- memory:end -->"
    doc.write_text("# old report\n\n" + kept + "\n\nold text that goes\n")
    (tmp_path / "benchmarks.json").write_text("{}")
    monkeypatch.setattr(REPORT, "markdown", lambda results, training: "# new report\n")
    REPORT.rewrite_markdown(tmp_path / "benchmarks.json")
    text = doc.read_text()
    assert text.startswith("# new report") and kept in text and "old text" not in text


def test_the_checked_in_report_keeps_every_section_when_the_bench_rewrites_it(tmp_path):
    """``napari-denoise bench`` rewrites docs/benchmarks.md from its JSON and keeps only
    the marked sections of other scripts: a section written there by hand without markers
    (the stacks section) was dropped by a bench run. Every heading must survive."""
    import shutil
    from pathlib import Path

    docs = Path(__file__).resolve().parents[1] / "docs"
    for path in [docs / "benchmarks.md", *docs.glob("*.json")]:  # the report reads them
        shutil.copy(path, tmp_path / path.name)
    before = [
        ln for ln in (tmp_path / "benchmarks.md").read_text().splitlines() if ln.startswith("#")
    ]
    REPORT.rewrite_markdown(tmp_path / "benchmarks.json")
    after = (tmp_path / "benchmarks.md").read_text().splitlines()
    assert [h for h in before if h not in after] == []
