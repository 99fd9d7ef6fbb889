"""The benchmark report: the training section written from benchmarks' JSON."""

import json

from napari_denoise.bench import _training_markdown


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
