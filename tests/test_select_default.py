"""scripts/select_default.py: which shipped models may become the default (issue 23, point 4:
the card, the selection script and the benchmarks agree)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
sys.path.insert(0, str(REPO / "benchmarks"))

import select_default  # noqa: E402


def _shipped_cards() -> list[dict]:
    zoo = REPO / "src" / "napari_denoise" / "zoo"
    return [json.loads(p.read_text(encoding="utf-8")) for p in sorted(zoo.glob("*.json"))]


def test_a_model_shipped_for_trying_never_becomes_the_default():
    """The multi-frame network (experimental) runs the frame-by-frame default on single
    frames, so it ties with it on every score; sorted first, it won the tie and the
    script printed it as the default, against the shipped card."""
    cards = _shipped_cards()
    names = select_default.candidates(cards)
    experimental = [c["name"] for c in cards if c.get("experimental")]
    assert "unet-fluo-stack" in experimental
    assert not set(experimental) & set(names)
    default = [c["name"] for c in cards if c.get("default_rank") == 1]
    assert default == ["unet-fluo"] and "unet-fluo" in names
    # the shipped default's recorded scores, with every shipped card scored as it was
    recorded = next(c for c in cards if c["name"] == "unet-fluo")["default_selection"]
    scores = {k: v for k, v in recorded["scores_db"].items() if k in names or k == "gaussian"}
    confocal = {k: recorded["confocal_validation_db"][k] for k in scores}
    assert select_default.choose(scores, confocal) == "unet-fluo"


def test_a_tie_goes_to_the_first_name_whatever_the_order_given():
    scores = {"gaussian": 33.0, "b-model": 34.7, "a-model": 34.7}
    confocal = {"gaussian": 39.0, "b-model": 39.5, "a-model": 39.5}
    assert select_default.choose(scores, confocal) == "a-model"
