"""The Markdown report of ``napari-denoise bench``: docs/benchmarks.md from its JSON.

The benchmark (``napari_denoise/bench.py``) measures and saves ``docs/benchmarks.json``;
this script turns that, and the other benchmarks' JSON beside it (training, no-ground-truth
check), into tables. Sections that other scripts write (between ``<!-- NAME:begin -->``
and ``<!-- NAME:end -->`` markers: tile seams, memory, bioimage.io) are kept as they are::

    python benchmarks/report.py [docs/benchmarks.json]
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO / "src") not in sys.path:
    sys.path.insert(0, str(REPO / "src"))

from napari_denoise.bench import FMD_ANCHORS, REFERENCE, TRAINING_JSON  # noqa: E402

__all__ = ["markdown", "rewrite_markdown"]

SECTION = re.compile(r"<!-- (?P<name>[\w-]+):begin -->.*?<!-- (?P=name):end -->", re.S)


def kept_sections(text: str) -> list[str]:
    """The marker-delimited sections of an existing report, in order."""
    return [m.group(0) for m in SECTION.finditer(text)]


def write_section(doc: Path, name: str, text: str) -> None:
    """Put ``text`` in ``doc`` between the ``<!-- NAME:begin/end -->`` markers, in place of
    the section there (or at the end); :func:`rewrite_markdown` keeps marked sections."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    old = doc.read_text(encoding="utf-8") if doc.exists() else ""
    block = f"{begin}\n{text.rstrip()}\n{end}"
    if begin in old and end in old:
        body = old[: old.index(begin)] + block + old[old.index(end) + len(end) :]
    else:
        body = old.rstrip("\n") + "\n\n" + block + "\n"
    doc.write_text(body, encoding="utf-8")


def _repeats(speeds: dict) -> str:
    """'5', or '2 to 5' when rows were measured in runs of different lengths."""
    counts = sorted({int(s.get("repeats", 2)) for s in speeds.values()})  # 2 before it was kept
    return str(counts[0]) if len(counts) == 1 else f"{counts[0]} to {counts[-1]}"


def _atomic_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.part")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def _best_classical(results: dict) -> str | None:
    from napari_denoise.engine.methods import get_method

    labels = [
        label
        for label in results["fmd"]
        if label != "noisy input" and get_method(label.split("+")[0]).kind == "classical"
    ]
    return max(labels, key=lambda lab: results["fmd"][lab]["all"]["psnr"]) if labels else None


def markdown(results: dict, training: Path | None = None) -> str:
    from napari_denoise.engine.methods import get_method

    meta = results["meta"]
    labels = list(results["fmd"])
    kinds = [k for k in results["fmd"]["noisy input"] if k != "all"]
    speed = results["speed_ms_per_mp"]
    lines = [
        "# Benchmarks",
        "",
        f"Written by `napari-denoise bench` on {meta['date']} ({meta['machine']}"
        f"{', QUICK subset' if meta['quick'] else ''}). Every method runs with its automatic "
        "parameters (chosen from the noisy image alone, never from the ground truth).",
        "",
        f"## FMD test_mix ({meta['fmd_images']} raw captures, 1 frame, data range 255)",
        "",
        "Cross-data-set: no method here was trained on FMD or had a parameter chosen on it.",
        "In honesty: the correlated-noise path of the self-calibrated filters (gaussian, box)",
        "was added after seeing widefield FMD captures defeat the first version; its rule and",
        "settings were then chosen on simulated correlated noise over W2S ground truths.",
        "Timings come from a shared 2-core machine: compare them as ratios within one run"
        + (
            f" (runs: {'; '.join(r['date'] + ': ' + ', '.join(r['methods']) for r in meta['runs'])})."
            if len(meta.get("runs", [])) > 1
            else "."
        ),
        "",
        "| method | PSNR dB | SSIM | PSNR* dB | ms / MP |",
        "|---|---:|---:|---:|---:|",
    ]
    for lab in labels:
        a = results["fmd"][lab]["all"]
        ms = f"{speed[lab]:.0f}" if lab in speed else ""
        lines.append(f"| {lab} | {a['psnr']:.2f} | {a['ssim']:.4f} | {a['psnr_ri']:.2f} | {ms} |")
    for name, value in FMD_ANCHORS.items():
        lines.append(f"| *{name}* | *{value:.2f}* | | | |")
    lines += [
        "",
        "PSNR* is range-invariant (prediction affinely fitted to the ground truth, as CARE does).",
        "Anchors in italics are published numbers (Zhang et al. CVPR 2019, Table 2), not measured here.",
        "",
    ]
    if any(lab.endswith("+ens8") for lab in labels):
        lines += [
            "`+ens8`: the same model with `ensemble=8` (its outputs for the 8 flips and "
            "rotations of the image, turned back and averaged: 8 passes).",
            "",
        ]
    best = _best_classical(results)
    if best and REFERENCE in speed:
        ratio = speed[REFERENCE] / speed[best]
        lines += [
            f"Best automatic classical method: **{best}**, "
            f"{results['fmd'][best]['all']['psnr']:.2f} dB at {speed[best]:.0f} ms per megapixel, "
            f"**{ratio:.0f}x faster** than VST+BM3D ({speed[REFERENCE]:.0f} ms/MP) in the same run.",
            "",
        ]
    lines += ["### Per microscope type (PSNR dB)", ""]
    short = [
        k.replace("Confocal_", "Conf ").replace("TwoPhoton_", "2P ").replace("WideField_", "WF ")
        for k in kinds
    ]
    lines.append("| method | " + " | ".join(short) + " |")
    lines.append("|---|" + "---:|" * len(kinds))
    for lab in labels:
        row = results["fmd"][lab]
        lines.append(f"| {lab} | " + " | ".join(f"{row[k]['psnr']:.2f}" for k in kinds) + " |")
    lines += _default_vs_gaussian(results, kinds)
    lines += _brightness_markdown(results, kinds, short)
    lines += [
        "",
        f"## W2S subset ({meta['w2s_images']} widefield pairs, range-invariant)",
        "",
        "Noisy and ground-truth images were each stretched to 0-255 on their own, so only the",
        "range-invariant metrics (marked *) compare intensities fairly.",
        "",
        "| method | PSNR* dB | SSIM* |",
        "|---|---:|---:|",
    ]
    trained = set()
    for lab in results["w2s"]:
        w = results["w2s"][lab]
        mark = ""
        if lab != "noisy input" and get_method(lab.split("+")[0]).kind == "model":
            trained.add(lab)
            mark = " †"
        lines.append(f"| {lab}{mark} | {w['psnr_ri']:.2f} | {w['ssim_ri']:.4f} |")
    if trained:
        lines += [
            "",
            "† Trained on W2S FOVs 001-008, which are among these 30 pairs: not a test result.",
            "Held-out FOVs 009-010 are scored in each model's card (`validation`).",
        ]
    if training is not None and training.is_file():
        lines += ["", *_training_markdown(training)]
    if training is not None:
        found = _selfcheck_markdown(training.with_name("selfcheck_agreement.json"))
        lines += ["", *found] if found else []
    if results.get("model_speed"):
        lines += [
            "",
            "## Network speed (one 2048 x 2048 frame, whole engine: tiling, normalisation)",
            "",
            f"Best of {_repeats(results['model_speed'])} runs after a warm-up (this machine "
            "is shared; repeated runs spread up to 1.7x). GFLOP/s counts the convolutions' multiply-accumulates "
            "twice; the peak is this machine's matrix multiply (torch.mm 2048^3) in the "
            "chosen precision, measured in the same run. *fp32* and *bf16*: the same frame "
            "with `NAPARI_DENOISE_PRECISION` set to each; *chosen*: what the probe at first "
            "use decides on this machine (bf16 autocast only where >= 10% faster and within "
            "the quality bound).",
            "",
            "| model | ms / MP fp32 | ms / MP bf16 | chosen | MP / s | MACs / pixel | GFLOP/s "
            "| % of matmul peak |",
            "|---|---:|---:|---|---:|---:|---:|---:|",
        ]
        for lab, s in results["model_speed"].items():
            fp32 = s.get("ms_per_mp_fp32")
            bf16 = s.get("ms_per_mp_bf16")
            lines.append(
                f"| {lab} | {f'{fp32:.0f}' if fp32 else '—'} | {f'{bf16:.0f}' if bf16 else '—'} | "
                f"{s.get('precision', 'fp32')} | {s['megapixels_per_s']:.2f} | "
                f"{s['macs_per_pixel'] / 1e3:.1f} k | {s['gflops']:.1f} | "
                f"{100 * s['peak_fraction']:.0f}% of {s['peak_gflops']:.0f} |"
            )
        found = [s for s in results["model_speed"].values() if "peak_gflops_bf16" in s]
        if found:
            lines += [
                "",
                f"Matrix-multiply peak in this run: float32 {found[0]['peak_gflops_fp32']:.0f} "
                f"GFLOP/s, bfloat16 {found[0]['peak_gflops_bf16']:.0f} GFLOP/s.",
            ]
    lines.append("")
    return "\n".join(lines)


def _default_vs_gaussian(results: dict, kinds: list[str]) -> list[str]:
    """The default method against the self-calibrated Gaussian, type by type (issue 15:
    never worse by more than 0.1 dB)."""
    from napari_denoise.engine.methods import default_method

    try:
        default = default_method().name
    except Exception:  # no default model available
        return []
    if default not in results["fmd"] or "gaussian" not in results["fmd"]:
        return []
    d, g = results["fmd"][default], results["fmd"]["gaussian"]
    gaps = [d[k]["psnr"] - g[k]["psnr"] for k in kinds]
    worse = [k for k, gap in zip(kinds, gaps, strict=True) if gap < -0.1]
    return [
        f"| *{default} - gaussian* | " + " | ".join(f"*{gap:+.2f}*" for gap in gaps) + " |",
        "",
        f"The default (`{default}`) against the self-calibrated Gaussian: "
        f"{d['all']['psnr'] - g['all']['psnr']:+.2f} dB overall; more than 0.1 dB worse on "
        f"{len(worse)} of {len(kinds)} types" + (f" ({', '.join(worse)})." if worse else "."),
        *_partly_in_domain(results, default, kinds),
    ]


# FMD types with other fields of the same type among a shipped model's training pairs
# (issue 23: FMD_Confocal_BPAE_B_train, fields 2-18 and 20; the test field 19 is not).
PARTLY_IN_DOMAIN = ("Confocal_BPAE_B",)


def _partly_in_domain(results: dict, default: str, kinds: list[str]) -> list[str]:
    """Which types are partly in-domain for the default, and its mean without them."""
    from napari_denoise.engine.models.store import find_model_files, read_card

    cards = [read_card(p) for p in find_model_files()]
    trained = any(
        c["name"] == default
        and any("FMD_Confocal_BPAE_B_train" in d for d in c.get("training", {}).get("data", []))
        for c in cards
    )
    inside = [k for k in PARTLY_IN_DOMAIN if k in kinds] if trained else []
    if not inside:
        return []
    rest = [k for k in kinds if k not in inside]
    mean = {
        m: float(np.mean([results["fmd"][m][k]["psnr"] for k in rest]))
        for m in (default, "gaussian")
    }
    return [
        "",
        f"{', '.join(inside)} is **partly in-domain** for `{default}`: other fields of "
        "the same type (FMD_Confocal_BPAE_B_train, not the test field 19) are among its "
        f"training pairs. Mean PSNR over the other {len(rest)} types: {default} "
        f"{mean[default]:.2f} dB, gaussian {mean['gaussian']:.2f} dB (all 12 types: "
        f"{results['fmd'][default]['all']['psnr']:.2f} and "
        f"{results['fmd']['gaussian']['all']['psnr']:.2f}).",
    ]


def _selfcheck_markdown(path: Path) -> list[str]:
    """The no-ground-truth check's agreement with the ground truth
    (benchmarks/selfcheck_agreement.py), if it has run."""
    if not path.is_file():
        return []
    found = json.loads(path.read_text())["summary"]
    lines = [
        "## Which result is better, without ground truth (benchmarks/selfcheck_agreement.py)",
        "",
        "Stein's unbiased risk estimate under the image's own noise model "
        "(`engine/denoise/selfcheck.py`) ranks pairs of results on one image (7 results "
        "per image: gaussian at its automatic strength, x0.5 and x2, unet-fluo, unet-fluo-nm "
        "at strength 1 and 2, unet-fluo blended 0.7 with its input); the ground truth ranks "
        "them by MSE (fitted to the noisy image's scale). Pairs under 0.1 dB apart are "
        "counted apart. Never FMD.",
        "",
        "| images | pairs | same ranking | rate | near ties (same) |",
        "|---|---:|---:|---:|---:|",
    ]
    names = {"w2s": "W2S FOVs 001-010 (real)", "hela": "hela proxy (synthetic noise)", "all": "all"}
    for key, label in names.items():
        r = found[key]
        lines.append(
            f"| {label} | {r['pairs']} | {r['agree']} | {100 * r['rate']:.1f}% | "
            f"{r['near_ties']} ({r['near_ties_agree']}) |"
        )
    return lines


def _brightness_markdown(results: dict, kinds: list[str], short: list[str]) -> list[str]:
    found = results.get("fmd_brightness")
    if not found:
        return []
    from napari_denoise.engine.methods import default_method

    default = default_method().name
    lines = [
        "",
        "### How far a capture's brightness is from its ground truth",
        "",
        "Each capture regressed on its ground truth (`raw ~ a * gt + b`): `a` is its brightness",
        "relative to the 50-frame average, which varies between captures (laser power,",
        "bleaching). A perfect denoiser returns the noise-free scene at the capture's own",
        "brightness; its PSNR against the ground truth (the bound) caps every method's",
        "plain PSNR, whatever it learnt. PSNR* fits the brightness away.",
        "",
        "| | " + " | ".join(short) + " | all |",
        "|---|" + "---:|" * (len(kinds) + 1),
        "| brightness a (min-max) | "
        + " | ".join(f"{found[k]['slope_min']:.2f}-{found[k]['slope_max']:.2f}" for k in kinds)
        + " | |",
        "| bound, PSNR dB (mean of 4) | "
        + " | ".join(f"{found[k]['bound_psnr']:.1f}" for k in kinds)
        + f" | {found['all']['bound_psnr']:.1f} |",
        "| bound, worst capture | "
        + " | ".join(f"{found[k]['bound_psnr_min']:.1f}" for k in kinds)
        + " | |",
    ]
    if default in results["fmd"]:
        row = results["fmd"][default]
        lines.append(
            f"| {default} (measured) | "
            + " | ".join(f"{row[k]['psnr']:.2f}" for k in kinds)
            + f" | {row['all']['psnr']:.2f} |"
        )
    return lines


def rewrite_markdown(json_path: Path) -> None:
    """Regenerate the Markdown from a saved ``benchmarks.json`` (no re-run), keeping the
    sections other scripts wrote (between markers) at the end, as they were."""
    results = json.loads(Path(json_path).read_text())
    training = Path(json_path).with_name(TRAINING_JSON)
    out = Path(json_path).with_suffix(".md")
    text = markdown(results, training)
    old = out.read_text(encoding="utf-8") if out.is_file() else ""
    for section in kept_sections(old):
        if section not in text:
            text = text.rstrip("\n") + "\n\n" + section + "\n"
    _atomic_text(out, text)


def _runs(rows: dict, date: str) -> str:
    """'run D', or 'runs D1, D2' when some rows were re-run on their own."""
    runs = sorted({r.get("run", date) for r in rows.values()})
    return f"run {runs[0]}" if len(runs) == 1 else f"runs {', '.join(runs)}"


def _longer_markdown(longer: dict | None, ft: dict) -> list[str]:
    """Fine-tuning with more time on some types: does time lift the gain?"""
    if not longer:
        return []
    rows = {t: r for t, r in longer["rows"].items() if t in ft["rows"]}
    minutes = f"{longer['minutes_per_type']:g}"
    lines = [
        f"More time, as a diagnostic (not the protocol): the same runs with {minutes} min per "
        f"type instead of {ft['minutes_per_type']:g}, on some types ({_runs(rows, longer['date'])}).",
        "",
        f"| type | gain in {ft['minutes_per_type']:g} min | gain in {minutes} min | steps |",
        "|---|---:|---:|---:|",
    ]
    for t, r in rows.items():
        short = ft["rows"][t]
        lines.append(
            f"| {t} | {short['finetuned'] - short['default']:+.2f} | "
            f"{r['finetuned'] - r['default']:+.2f} | {r['steps']} |"
        )
    return [*lines, ""]


def _training_markdown(path: Path) -> list[str]:
    """The section written by benchmarks/train_fmd.py (its JSON), if it has run."""
    if not path.is_file():
        return []
    saved = json.loads(path.read_text())
    lines = ["## Training on your own data (benchmarks/train_fmd.py)", ""]
    ft = saved.get("finetune")
    if ft:
        rows = ft["rows"]
        mean = {
            k: float(np.mean([r[k] for r in rows.values()]))
            for k in ("noisy", "default", "finetuned")
        }
        lines += [
            f"Supervised fine-tuning of `{ft['start']}` on the LEFT half of the 4 raw captures of "
            f"each FMD type against its ground truth, at most {ft['minutes_per_type']:g} min on "
            f"{ft['threads']} CPU thread(s) per type; scored on the RIGHT halves only, each "
            f"denoised alone (PSNR dB, data range 255; {_runs(rows, ft['date'])}).",
            "",
            f"| type | noisy | {ft['start']} | fine-tuned | gain | steps |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for t, r in rows.items():
            lines.append(
                f"| {t} | {r['noisy']:.2f} | {r['default']:.2f} | {r['finetuned']:.2f} | "
                f"{r['finetuned'] - r['default']:+.2f} | {r['steps']} |"
            )
        lines += [
            f"| **all** | {mean['noisy']:.2f} | {mean['default']:.2f} | {mean['finetuned']:.2f} | "
            f"**{mean['finetuned'] - mean['default']:+.2f}** | |",
            "",
            "Anchor: Noise2Noise trained in-domain on all of FMD's training data scores 35.5 dB "
            "on the whole test_mix (Zhang et al. 2019; not measured here).",
            "",
        ]
        lines += _longer_markdown(saved.get("finetune_longer"), ft)
    proxy = saved.get("finetune_proxy")
    if proxy:
        names = max((list(rec["rows"]) for rec in proxy.values()), key=len)
        lines += [
            "The fine-tuning recipe was chosen on a proxy, never on FMD: the same protocol "
            "(left halves of 4 captures, 2 min, right halves scored) on the 3 channels of "
            "`hela-cells.tif` with synthetic noise in confocal-, two-photon- and "
            "widefield-like regimes (`benchmarks/finetune_proxy.py`). Gain over the start "
            "model in dB (a recipe with a time or a number of captures in brackets differs "
            "from the protocol in that; \u2014: not run):",
            "",
            f"| recipe | {' | '.join(names)} | mean | min |",
            f"|---|{'---:|' * (len(names) + 2)}",
        ]
        for variant, rec in proxy.items():
            gains = " | ".join(
                f"{rec['rows'][n]['gain']:+.2f}" if n in rec["rows"] else "\u2014" for n in names
            )
            lines.append(
                f"| `{variant}` | {gains} | {rec['mean_gain']:+.2f} | {rec['min_gain']:+.2f} |"
            )
        protocol = {
            v: rec
            for v, rec in proxy.items()
            if set(rec["rows"]) == set(names)
            and rec.get("minutes", 2.0) == 2.0
            and rec.get("captures", 4) == 4
        }
        if protocol:
            best = max(protocol, key=lambda v: (protocol[v]["mean_gain"], protocol[v]["min_gain"]))
            lines += [
                "",
                f"Best mean gain on the proxy under the benchmark's protocol: `{best}` "
                "(FinetuneSpec's default for fine-tuning a trained model: lr 3e-4, L1).",
            ]
        lines.append("")
    nv = saved.get("n2v")
    if nv:
        rows = nv["rows"]
        lines += [
            f"{nv['mode'].upper()} from a fresh U-Net on ONE raw capture (`_1`) of each FMD type, "
            f"at most {nv['minutes_per_type']:g} min on {nv['threads']} CPU thread(s), scored on that "
            f"capture against its ground truth ({_runs(rows, nv['date'])}).",
            "",
            f"| type | noisy | {nv['mode']} | gaussian (auto) | blind spot | steps |",
            "|---|---:|---:|---:|---|---:|",
        ]
        for t, r in rows.items():
            radius = r.get("blind_radius", 0)  # runs before blind blocks: one pixel
            spot = f"{2 * radius + 1}x{2 * radius + 1}" if radius else "1 px"
            lines.append(
                f"| {t} | {r['noisy']:.2f} | {r['n2v']:.2f} | {r['gaussian']:.2f} | {spot} | "
                f"{r['steps']} |"
            )
        mean = {
            k: float(np.mean([r[k] for r in rows.values()])) for k in ("noisy", "n2v", "gaussian")
        }
        lines += [
            f"| **all** | {mean['noisy']:.2f} | {mean['n2v']:.2f} | {mean['gaussian']:.2f} | | |",
            "",
            "Noise2Void assumes that neighbouring pixels carry independent noise; FMD's "
            "widefield captures break that (their noise is spatially correlated), and a "
            "one-pixel blind spot lets the network copy the noise from the neighbours. The "
            "blind spot is chosen from the noisy image alone (`selfsup.blind_radius_for`): "
            "one pixel when the noise is independent, else a block covering the reach of its "
            "measured autocorrelation (column *blind spot*).",
            "",
        ]
        before = nv.get("one_pixel_before") or {}
        if before:
            listed = ", ".join(
                f"{t} {r['n2v']:.2f} (the block: {rows[t]['n2v'] - r['n2v']:+.2f} dB)"
                if t in rows
                else f"{t} {r['n2v']:.2f}"
                for t, r in before.items()
            )
            run = next(iter(before.values())).get("run", "")
            lines += [f"With one-pixel blind spots (run {run}): {listed}.", ""]
        lines += [
            "Anchor: PN2V on FMD Confocal_MICE 38.2 dB (Prakash et al.; not measured here).",
            "",
        ]
    lines += _n2v_from_start_markdown(saved.get("n2v_from_start"))
    lines += _n2v_start_markdown(saved.get("n2v_start"))
    return lines


def _n2v_from_start_markdown(rec: dict | None) -> list[str]:
    """Noise2Void on one FMD capture, starting from a shipped model (train_fmd.py n2v --start)."""
    if not rec:
        return []
    start, rows = rec["start"], rec["rows"]
    lines = [
        f"{rec['mode'].upper()} from `{start}` on the same capture of each type, at most "
        f"{rec['minutes_per_type']:g} min on {rec['threads']} CPU thread(s) "
        f"({_runs(rows, rec['date'])}), beside `{start}` as shipped on that capture:",
        "",
        f"| type | noisy | {start} as shipped | {rec['mode']} from {start} | gaussian (auto) "
        "| blind spot | steps |",
        "|---|---:|---:|---:|---:|---|---:|",
    ]
    for t, r in rows.items():
        radius = r.get("blind_radius", 0)
        spot = f"{2 * radius + 1}x{2 * radius + 1}" if radius else "1 px"
        lines.append(
            f"| {t} | {r['noisy']:.2f} | {r['start']:.2f} | {r['n2v']:.2f} | "
            f"{r['gaussian']:.2f} | {spot} | {r['steps']} |"
        )
    mean = {
        k: float(np.mean([r[k] for r in rows.values()]))
        for k in ("noisy", "start", "n2v", "gaussian")
    }
    better = sum(r["n2v"] > r["start"] for r in rows.values())
    lines += [
        f"| **all** | {mean['noisy']:.2f} | {mean['start']:.2f} | {mean['n2v']:.2f} | "
        f"{mean['gaussian']:.2f} | | |",
        "",
        f"Training on the capture itself beats `{start}` as shipped on {better} of "
        f"{len(rows)} types ({mean['n2v'] - mean['start']:+.2f} dB on average).",
        "",
    ]
    return lines


def _n2v_start_markdown(rec: dict | None) -> list[str]:
    """Where Noise2Void starts, chosen on held-out W2S images (benchmarks/n2v_start.py)."""
    if not rec:
        return []
    start = rec["start"]
    lines = [
        f"Where Noise2Void starts was chosen off FMD, on held-out W2S images "
        f"(`benchmarks/n2v_start.py`, {rec['minutes']:g} min each on one thread, "
        f"range-invariant PSNR dB, run {rec['date']}):",
        "",
        f"| image | noisy | {start} as shipped | N2V2, new U-Net | N2V from {start} | blind spot |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for key, r in rec["rows"].items():
        radius = r["blind_radius"]
        spot = f"{2 * radius + 1}x{2 * radius + 1}" if radius else "1 px"
        lines.append(
            f"| {key} | {r['noisy']:.2f} | {r['start']:.2f} | {r['n2v2_new']:.2f} | "
            f"{r['n2v_from_start']:.2f} | {spot} |"
        )
    m = rec["mean"]
    lines += [
        f"| **mean** | {m['noisy']:.2f} | {m['start']:.2f} | {m['n2v2_new']:.2f} | "
        f"{m['n2v_from_start']:.2f} | |",
        "",
    ]
    warm_gain = m["n2v_from_start"] - m["n2v2_new"]
    shipped_lead = m["start"] - m["n2v_from_start"]
    text = (
        f"Noise2Void from `{start}` scores {warm_gain:+.2f} dB against N2V2 from a new U-Net "
        "in the same time (the Train widget and `napari-denoise train --mode n2v` start "
        "from the shipped default unless told otherwise)."
    )
    if shipped_lead > 0:
        text += (
            f" On these images, close to what `{start}` was trained on, the shipped model "
            f"as it is scores {shipped_lead:.2f} dB higher still: Noise2Void is worth its "
            "minutes on images unlike the shipped models' training data."
        )
    return [*lines, text, ""]


def main(argv=None) -> int:
    json_path = Path(argv[0]) if argv else REPO / "docs" / "benchmarks.json"
    rewrite_markdown(json_path)
    print(f"wrote {json_path.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
