"""The CPU precision is decided on the machine that runs the model: the decision logic,
the per-machine cache and the override, with fake probes (no timing)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_denoise.engine.models import inference
from napari_denoise.errors import ParameterError


def probe_result(fp32=300.0, bf16=150.0, mean=1e-4, largest=5e-3):
    return {
        "fp32_ms_per_mp": fp32,
        "bf16_ms_per_mp": bf16,
        "mean_change": mean,
        "max_change": largest,
    }


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NAPARI_DENOISE_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv(inference.PRECISION_ENV, raising=False)
    inference.forget_precision()
    yield tmp_path / "precision.json"
    inference.forget_precision()


class FakeProbe:
    def __init__(self, result):
        self.result = result
        self.calls = 0

    def __call__(self, model):
        self.calls += 1
        return dict(self.result, precision=inference.decide_precision(self.result))


@pytest.mark.parametrize(
    ("result", "expected"),
    [
        (probe_result(), "bf16"),  # twice as fast, output within the bound
        (probe_result(bf16=290.0), "fp32"),  # not faster by the margin
        (probe_result(bf16=450.0), "fp32"),  # slower (an Intel CPU without bf16 units)
        (probe_result(mean=5e-3), "fp32"),  # faster but changes the output on average
        (probe_result(mean=7e-4), "fp32"),  # a network without residual: bf16 outputs
        (probe_result(mean=1.5e-4, largest=6e-3), "bf16"),  # unet-fluo, measured here
        (probe_result(largest=0.1), "fp32"),  # faster but one pixel moves 10% of the range
    ],
)
def test_decision_needs_faster_and_within_bound(result, expected):
    assert inference.decide_precision(result) == expected


def test_decision_is_probed_once_and_cached_per_machine_and_model(cache):
    probe = FakeProbe(probe_result())
    assert inference.cpu_precision(None, "sha-a", probe=probe) == "bf16"
    assert probe.calls == 1
    saved = json.loads(cache.read_text())
    (key,) = saved["entries"]
    assert key == inference.machine_key("sha-a")
    assert "threads" in key and "torch" in key and key.endswith("sha-a")
    assert saved["entries"][key]["precision"] == "bf16"
    # A new process (memo forgotten) reads the file instead of probing again.
    inference.forget_precision()
    slow = FakeProbe(probe_result(bf16=900.0))
    assert inference.cpu_precision(None, "sha-a", probe=slow) == "bf16"
    assert slow.calls == 0
    # Another model (other weights) is probed on its own.
    assert inference.cpu_precision(None, "sha-b", probe=slow) == "fp32"
    assert slow.calls == 1
    assert len(json.loads(cache.read_text())["entries"]) == 2


def test_another_thread_count_is_another_machine(cache):
    import torch

    threads = torch.get_num_threads()
    probe = FakeProbe(probe_result())
    inference.cpu_precision(None, "sha-a", probe=probe)
    try:
        torch.set_num_threads(threads + 1)
        inference.cpu_precision(None, "sha-a", probe=probe)
    finally:
        torch.set_num_threads(threads)
    assert probe.calls == 2


def test_override_skips_the_probe(cache, monkeypatch):
    probe = FakeProbe(probe_result())
    monkeypatch.setenv(inference.PRECISION_ENV, "fp32")
    assert inference.cpu_precision(None, "sha-a", probe=probe) == "fp32"
    monkeypatch.setenv(inference.PRECISION_ENV, "BF16")
    assert inference.cpu_precision(None, "sha-a", probe=FakeProbe(probe_result(bf16=900))) == "bf16"
    assert probe.calls == 0 and not cache.exists()
    monkeypatch.setenv(inference.PRECISION_ENV, "fast")
    with pytest.raises(ParameterError, match="NAPARI_DENOISE_PRECISION must be one of"):
        inference.cpu_precision(None, "sha-a", probe=probe)


def test_corrupt_cache_is_probed_again_and_replaced(cache):
    cache.write_text("{not json")
    probe = FakeProbe(probe_result())
    assert inference.cpu_precision(None, "sha-a", probe=probe) == "bf16"
    assert probe.calls == 1
    assert json.loads(cache.read_text())["version"] == inference.PRECISION_CACHE_VERSION


def test_probe_measures_both_precisions_on_a_real_image():
    import torch

    from napari_denoise.engine.models.unet import UNet, UNetConfig

    torch.manual_seed(0)
    model = UNet(UNetConfig(base=4, depth=2)).eval()
    with torch.no_grad():  # the head starts at zero (output = input): give it weights
        for p in model.parameters():
            p.normal_(0, 0.3)
    image = inference.probe_image()
    assert image.shape == (inference.PROBE_SIDE, inference.PROBE_SIDE)
    assert np.ptp(image) > 0
    record = inference.probe_precision(model, image[:64, :64], repeats=1)
    assert record["fp32_ms_per_mp"] > 0 and record["bf16_ms_per_mp"] > 0
    assert 0 <= record["mean_change"] <= record["max_change"]
    assert record["max_change"] > 0  # bf16 really ran: it rounds
    assert record["precision"] == inference.decide_precision(record)


def test_the_card_no_longer_decides(cache, monkeypatch):
    """The method follows the machine's decision, whatever the card's ``cpu_bf16`` says."""
    from napari_denoise.engine.methods import get_method
    from napari_denoise.engine.models import registry

    seen = []
    real = registry.run_model
    monkeypatch.setattr(
        registry, "run_model", lambda *a, **k: seen.append(k["bf16"]) or real(*a, **k)
    )
    method = get_method("unet-fluo")
    block = np.random.default_rng(0).poisson(20, (64, 64)).astype(np.float32)
    for choice in ("bf16", "fp32"):
        monkeypatch.setenv(inference.PRECISION_ENV, choice)
        method.fn(block, norm_low=0.0, norm_high=40.0, device="cpu")
    assert seen == [True, False]


def test_an_inconclusive_probe_is_not_kept(cache):
    """Both precisions equally slow (cores busy with other work): fp32 for this process,
    and the next one probes again instead of keeping fp32 for good."""
    busy = FakeProbe(probe_result(fp32=3839.0, bf16=3840.4))
    assert inference.cpu_precision(None, "sha-a", probe=busy) == "fp32"
    assert busy.calls == 1 and not cache.exists()
    inference.forget_precision()  # a new process, on a quiet machine
    quiet = FakeProbe(probe_result())
    assert inference.cpu_precision(None, "sha-a", probe=quiet) == "bf16"
    assert quiet.calls == 1 and cache.exists()
    # Clear answers are kept: refused for its output, or clearly slower (another CPU).
    for result in (probe_result(mean=5e-3), probe_result(bf16=450.0)):
        assert inference.conclusive(dict(result))
