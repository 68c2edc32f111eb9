"""Outputs of ``scripts/quality.py``: sample grids (PNG), ``quality.json`` and ``QUALITY.md``."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image

from quality_data import read_rgb

MAX_PICTURE_BYTES = 300_000  # pictures are committed: keep the repository small
LABEL_HEIGHT = 18
TRANSLATOR_TOLERANCE_LEVELS = 2  # 8-bit rounding of values computed in another order


def load_average() -> list[float] | None:
    try:
        return [float(v) for v in Path("/proc/loadavg").read_text().split()[:3]]
    except OSError:
        return None


def method_label(spec: dict[str, Any]) -> str:
    """``pix2pix, unet_128 (32 ch)``; CycleGAN runs also name their data size and DiffAugment."""
    label = f"{spec['model']}, {spec['generator']} ({spec['base_channels']} ch)"
    if spec["model"] == "cyclegan":
        label += f", {spec['train_images']} images"
    if spec["diffaug"]:
        label += " + DiffAugment"
    return label


# ---------------------------------------------------------------------------- pictures


def _label(text: str, width: int) -> np.ndarray:
    bar = np.full((LABEL_HEIGHT, width, 3), 32, dtype=np.uint8)
    scale = 0.38
    while scale > 0.2 and cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)[0][0] > width - 4:
        scale -= 0.02
    cv2.putText(bar, text, (3, LABEL_HEIGHT - 5), cv2.FONT_HERSHEY_SIMPLEX, scale, (235, 235, 235), 1, cv2.LINE_AA)
    return bar


def save_picture(path: Path, rgb: np.ndarray, max_bytes: int = MAX_PICTURE_BYTES) -> dict[str, Any]:
    """Save as PNG; if larger than ``max_bytes``, as a 256-color (dithered) PNG instead."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(rgb)
    tmp = path.with_name(f".tmp-{path.name}-{os.getpid()}")
    image.save(tmp, format="PNG", optimize=True)
    palette = False
    if tmp.stat().st_size > max_bytes:
        image.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.FLOYDSTEINBERG).save(tmp, format="PNG", optimize=True)
        palette = True
    os.replace(tmp, path)
    return {"path": path.name, "bytes": path.stat().st_size, "palette_256": palette}


def grid(columns: list[tuple[str, Path]], names: list[str], path: Path) -> dict[str, Any]:
    """Rows = test images ``names``, columns = (label, folder) holding ``<name>.png``."""
    rows = []
    for name in names:
        rows.append(np.concatenate([read_rgb(folder / f"{name}.png") for _, folder in columns], axis=1))
    body = np.concatenate(rows, axis=0)
    side = body.shape[1] // len(columns)
    header = np.concatenate([_label(label, side) for label, _ in columns], axis=1)
    info = save_picture(path, np.concatenate([header, body], axis=0))
    info["columns"] = [label for label, _ in columns]
    info["images"] = names
    return info


def write_grids(result: dict[str, Any], roots: dict[str, Path], out: Path, rows: int) -> list[dict[str, Any]]:
    """``sketch2photo.png`` (input | pix2pix | target) and ``day2night.png`` (input | each CycleGAN run | target)."""
    models = {r["name"]: r for r in result["rows"] if r["kind"] == "model"}
    pictures = []
    s2p, d2n = roots["sketch2photo"], roots["day2night"]
    names = sorted(p.stem for p in (d2n / "testA").iterdir())[:rows]
    if "sketch2photo" in models:
        columns = [("input: edges", s2p / "test" / "A"), ("pix2pix", Path(models["sketch2photo"]["pred_dir"])),
                   ("target photo", s2p / "test" / "B")]
        pictures.append({"task": "sketch2photo", **grid(columns, names, out / "sketch2photo.png")})
    night = [r for r in models.values() if r["task"] == "day2night" and r["spec"]["seed"] == 0]
    if night:
        columns = [("input: day", d2n / "testA")]
        for r in sorted(night, key=lambda r: (-r["spec"]["train_images"], r["spec"]["diffaug"])):
            label = f"{r['spec']['train_images']} imgs" + (" + DiffAug" if r["spec"]["diffaug"] else "")
            columns.append((label, Path(r["pred_dir"])))
        columns.append(("target night", d2n / "test_target"))
        pictures.append({"task": "day2night", **grid(columns, names, out / "day2night.png")})
    return pictures


# ---------------------------------------------------------------------------- json and markdown


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{path.name}-{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_outputs(result: dict[str, Any], out: Path) -> None:
    _write(out / "quality.json", json.dumps(_json_safe(result), indent=1, allow_nan=False) + "\n")
    _write(out / "QUALITY.md", render_markdown(result))


def _score_cells(r: dict[str, Any]) -> str:
    return f"{r['psnr']:.2f} | {r['ssim']:.3f} | {r['l1']:.4f}"


def _budget(r: dict[str, Any]) -> str:
    if r["kind"] == "variant":
        return "the same model"
    if r["kind"] != "model":
        return "—"
    return f"{r['spec']['steps']} steps, {r['train_minutes']:.1f} min"


def translator_disagrees(r: dict[str, Any]) -> bool:
    """More than float noise between the Translator's output and the bare generator's (fp32 runs)."""
    return r["kind"] == "model" and r.get("translator_vs_forward_levels", 0) > TRANSLATOR_TOLERANCE_LEVELS


def _table(rows: list[dict[str, Any]]) -> list[str]:
    lines = ["| method | PSNR (dB) ↑ | SSIM ↑ | L1 ↓ | training budget |", "|---|---:|---:|---:|---|"]
    for r in rows:
        name = {"model": f"**{r['method']}**", "variant": f"{r['method']}"}.get(r["kind"], f"baseline: {r['method']}")
        lines.append(f"| {name} | {_score_cells(r)} | {_budget(r)} |")
        if translator_disagrees(r):
            lines.append(f"| {r['method']}: bare generator forward, eval mode, no Translator | "
                         f"{_score_cells(r['forward'])} | the same model |")
    disagree = [r for r in rows if translator_disagrees(r)]
    for r in disagree:
        lines += ["", f"**Warning:** for {r['method']} the Translator's output differs from the bare generator's "
                  f"(same weights, eval mode, one {r['spec']['generator']} forward per test image) by up to "
                  f"{r['translator_vs_forward_levels']}/255, so the Translator, not only the model, shapes the bold row. "
                  "Look first at the Translator's padding (`pad_to_multiple` in `translate/infer/translator.py`)."]
    return lines


def diffaug_pairs(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per seed: the 50-image run without and with DiffAugment, and their difference."""
    small = [r for r in rows if r["kind"] == "model" and r["task"] == "day2night"
             and r["spec"]["train_images"] < max(x["spec"]["train_images"] for x in rows if x["kind"] == "model")]
    pairs = []
    for seed in sorted({r["spec"]["seed"] for r in small}):
        off = [r for r in small if r["spec"]["seed"] == seed and not r["spec"]["diffaug"]]
        on = [r for r in small if r["spec"]["seed"] == seed and r["spec"]["diffaug"]]
        if off and on:
            off, on = off[0], on[0]
            wins = sum(b > a for a, b in zip(off["per_image_psnr"], on["per_image_psnr"]))
            pairs.append({"seed": seed, "off": off, "on": on, "delta_psnr": on["psnr"] - off["psnr"],
                          "delta_ssim": on["ssim"] - off["ssim"], "delta_l1": on["l1"] - off["l1"],
                          "wins": wins, "images": len(off["per_image_psnr"])})
    return pairs


def _diffaug_verdict(pairs: list[dict[str, Any]]) -> str:
    deltas = [p["delta_psnr"] for p in pairs]
    mean = float(np.mean(deltas))
    parts = [f"seed {p['seed']}: {p['delta_psnr']:+.2f} dB PSNR, {p['delta_ssim']:+.3f} SSIM, DiffAugment better on "
             f"{p['wins']} of {p['images']} test images" for p in pairs]
    text = f"DiffAugment − no DiffAugment: {'; '.join(parts)}."
    if len(pairs) == 1:
        text += (" One seed only: the per-image count says how consistently the difference shows across the test images, "
                 "not whether it would survive another seed (short GAN runs vary with the seed; `--seeds 2` measures that).")
    else:
        text += f" Mean over {len(pairs)} seeds {mean:+.2f} dB (spread {min(deltas):+.2f} … {max(deltas):+.2f})."
    return text


def _versus(model: dict[str, Any], baselines: list[dict[str, Any]]) -> str:
    """One sentence: the model's PSNR and SSIM against the best baseline of each."""
    parts = []
    for metric, unit, fmt in (("psnr", " dB", ".2f"), ("ssim", "", ".3f")):
        best = max(baselines, key=lambda r: r[metric])
        verdict = "above" if model[metric] > best[metric] else "below"
        parts.append(f"{metric.upper()} {model[metric]:{fmt}}{unit}, {verdict} the best baseline's "
                     f"{best[metric]:{fmt}}{unit} ({best['method']})")
    return "; ".join(parts)


def summary(rows: list[dict[str, Any]], pairs: list[dict[str, Any]]) -> list[str]:
    """Findings computed from the numbers (no hand-written claims that a rerun could falsify)."""
    lines = []
    for task in ("sketch2photo", "day2night"):
        base = [r for r in rows if r["task"] == task and r["kind"] == "baseline" and r["name"] != "day2night/reference"]
        for r in rows:
            if r["task"] == task and r["kind"] in ("model", "variant") and not (
                    task == "day2night" and r["spec"]["train_images"] < max(x["spec"]["train_images"] for x in rows if x["kind"] == "model")):
                lines.append(f"- {r['method']}: {_versus(r, base)}.")
    for p in pairs:
        lines.append(f"- DiffAugment at {p['off']['spec']['train_images']} images, seed {p['seed']}: "
                     f"{p['delta_psnr']:+.2f} dB PSNR, {p['delta_ssim']:+.3f} SSIM (better on {p['wins']} of {p['images']} test images).")
    return lines


def render_markdown(result: dict[str, Any]) -> str:
    m, plan, photos, probe = result["machine"], result["plan"], result["photos"], result["precision_probe"]
    rows = result["rows"]
    order = {"model": 0, "variant": 1, "baseline": 2}
    by_task = {t: sorted((r for r in rows if r["task"] == t), key=lambda r: order[r["kind"]]) for t in ("sketch2photo", "day2night")}
    full = max(r["spec"]["train_images"] for r in rows if r["kind"] == "model")
    d2n_main = [r for r in by_task["day2night"] if r["kind"] == "model" and r["spec"]["train_images"] == full]
    d2n_base = [r for r in by_task["day2night"] if r["kind"] == "baseline"]
    pairs = diffaug_pairs(rows)
    load = "load average unknown"
    if m.get("loadavg") and m.get("loadavg_end"):
        load = f"load average {m['loadavg'][0]:.1f} at the start, {m['loadavg_end'][0]:.1f} at the end"
    faster = "bf16" if probe["bf16_speedup"] > 1.05 else "fp32"
    lines = [
        "# Quality benchmark",
        "",
        "What small models learn with a fixed CPU budget, on real photos, measured on whole photos they never saw.",
        "Generated by `scripts/quality.py` (issue 5); do not edit by hand — rerun the command below.",
    ]
    if result["quick"]:
        lines += ["", "> **`--quick` run: tiny images and networks, a few steps. A smoke test; the numbers mean nothing.**"]
    lines += [
        "",
        "```",
        result["command"],
        "```",
        "",
        f"- Machine: {m['cpu']}, {m['usable_cpus']} CPUs shared with other jobs ({load}); "
        f"torch {m['torch']}, {result['threads']} torch thread(s), CPU only.",
        f"- Total {result['total_minutes']:.1f} min (data, {len([r for r in rows if r['kind'] == 'model'])} trainings, "
        f"evaluation, pictures), started {result['started']}.",
        f"- Precision: **{result['precision']}**. One resnet_6blocks (16 ch) forward+backward at {probe['image_side']} px took "
        f"{probe['fp32_s'] * 1000:.0f} ms in fp32 and {probe['bf16_s'] * 1000:.0f} ms in bf16 autocast here "
        f"(bf16 {probe['bf16_speedup']:.2f}× the speed of fp32, so {faster} is the faster choice"
        f"{'' if faster == result['precision'] else ' — this run used the other one'}; the CPU reports "
        f"{'AVX512-BF16' if m.get('avx512_bf16') else 'no AVX512-BF16'} and {'AMX' if m.get('amx_bf16') else 'no AMX'}).",
        "",
        "## Summary",
        "",
        *summary(rows, pairs),
        "",
        "## Set-up",
        "",
        f"- Photos: scikit-image's bundled photos (`skimage.data`). **Test crops come only from {', '.join(photos['test'])}**, "
        "which no training set contains; all other crops are training data.",
        f"- Every image is a random square crop (40–90 % of the photo's short side) resized to {plan['size']} px; "
        f"{plan['train_images']} training crops per set, {plan['test_images']} test crops (the same crops for both tasks). "
        "Training uses flips only (no resize or crop jitter).",
        f"- **sketch→photo** (paired, pix2pix): A = Canny edges of the crop (`translate.data.samples.edges`), "
        f"B = the crop. Training photos: {', '.join(photos['sketch2photo_train'])}.",
        f"- **day→night** (unpaired, CycleGAN): A = day crops of {', '.join(photos['day_train'])}; "
        f"B = `render_night` of crops of *other* photos ({', '.join(photos['night_train'])}), "
        "so no B image is the translation of an A image. Because the rendering is ours, each test crop *a* has an exact "
        "target: its noise-free night rendering at mid-range strengths (`central_night`: gamma, exposure, saturation "
        "at the middle of `render_night`'s random ranges). Domain B's images are random draws around that rendering; "
        "the baseline *a random night rendering of the input* shows how far one draw lies from it.",
        "- Scores: mean over the test crops of per-image PSNR (peak 1), SSIM (11×11 Gaussian window) and L1 "
        "(`translate.metrics.evaluate_paired`), on the PNG outputs of `Translator.translate_folder` (eval mode).",
        "- Budgets are fixed in steps (batch size 1, paper losses and learning rate, linear decay over the second "
        "half of the run); the minutes are measured and depend on the load of the machine.",
        "",
        "## 1. sketch→photo (paired)",
        "",
        *_table(by_task["sketch2photo"]),
        "",
        "![input edges | pix2pix | target photo](quality/sketch2photo.png)",
        "",
        "The bold row is what the toolkit gives: `Translator` runs the generator in eval mode (batch norm with the "
        "running statistics of training, no dropout). The pix2pix paper, and the reference `test.py` unless given "
        "`--eval`, instead normalise each test batch (here one image) with its own statistics and keep dropout on; "
        "the row *test-time batch statistics + dropout* scores the same weights that way (bare generator, no "
        "Translator). The picture shows the Translator's output.",
        "",
        "## 2. day→night (unpaired)",
        "",
        *_table(d2n_main + d2n_base),
        "",
        "![input | CycleGAN runs | target night](quality/day2night.png)",
        "",
        "The columns of the picture: the day input, each CycleGAN run of this page (seed 0), the exact night target.",
        "",
    ]
    if pairs:
        lines += [
            f"## 3. DiffAugment with {pairs[0]['off']['spec']['train_images']} training images",
            "",
            f"day→night as above but with the first {pairs[0]['off']['spec']['train_images']} crops of each domain, "
            f"without and with `--set train.diffaug={plan['diffaug_policy']}`, same steps and seed.",
            "",
            "| run | seed | PSNR (dB) ↑ | SSIM ↑ | L1 ↓ | training budget |",
            "|---|---:|---:|---:|---:|---|",
        ]
        for p in pairs:
            for r in (p["off"], p["on"]):
                lines.append(f"| {r['method']} | {p['seed']} | {_score_cells(r)} | {_budget(r)} |")
        for r in d2n_main:
            lines.append(f"| {r['method']} (section 2) | {r['spec']['seed']} | {_score_cells(r)} | {_budget(r)} |")
        lines += ["", _diffaug_verdict(pairs), ""]
    lines += [
        "## Reproducing",
        "",
        "The command above rebuilds the data and retrains every model from scratch in `runs/quality/` (`--work`), "
        "then rewrites this page, `quality.json` and `quality/*.png` (`--out`). The exact `translate train` command of "
        "each run is in `quality.json` (`rows[].train_command`), with the per-image PSNR of every row. "
        "Same command, same steps: the same numbers up to floating-point noise (thread count and CPU kind change "
        "summation order). `--minutes M` scales every run's steps by M/20; `--seeds N` repeats the DiffAugment "
        "comparison over N seeds.",
        "",
    ]
    return "\n".join(lines)
