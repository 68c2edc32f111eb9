"""``translate eval``: measure translation quality.

Two folders (predictions and their targets, matched by relative path, extension ignored)::

    translate eval PRED_DIR TARGET_DIR                 # PSNR, SSIM, L1 per image and mean
    translate eval PRED_DIR TARGET_DIR --fid --kid     # + distribution metrics
    translate eval FAKE_DIR REAL_DIR --unpaired --fid  # unrelated folders: FID/KID only

A video and its translation: temporal stability (warping error of the source and of the
translation along the source's optical flow, and their ratio, the flicker ratio; 1.0 is as
stable as the source)::

    translate eval --video SOURCE.mp4 TRANSLATED.mp4
    translate eval --video SOURCE.mp4 STABLE.mp4 --against FRAME_BY_FRAME.mp4   # + PSNR to it, per frame

A model on a dataset's test split (translated into ``--out DIR/translated`` or a temporary
folder, as PNG so that no compression error enters the numbers)::

    translate eval --model runs/facades --data datasets/facades [--fid]

- paired data (``DATA/test`` side by side A|B, or ``DATA/test/A`` + ``DATA/test/B``): the
  source side is translated and compared with the other side, pair by pair; ``--fid/--kid``
  compare the translations with the real target images as sets.
- unpaired data (``DATA/testA`` + ``DATA/testB``): there is no ground truth per image, so
  only ``--fid``/``--kid`` apply (translations of testA vs the real testB). Cycle
  reconstruction error is not reported: a network that copies its input scores perfectly
  on it, so it says nothing about translation quality.

``--direction BtoA`` translates the B side with the BtoA generator. For a run trained with
``data.direction=BtoA`` the sides follow the run's config.

With ``--out DIR`` the per-image ``metrics.csv`` and the summary ``metrics.json`` are written
there; the table is always printed. FID/KID use the Inception weights of the FID literature
(``pt_inception-2015-12-05-6726825d.pth``), found via ``--inception-weights``,
``$TRANSLATE_INCEPTION_WEIGHTS`` or the PyTorch hub cache; ``--download`` fetches them once.
For FID/KID every image is resized to 299x299 (bilinear), as the reference implementation
does, so the folders may mix sizes; PSNR/SSIM/L1 compare pixels, so each prediction must have
its target's size (a mismatch is an error naming the pair, never a silent resize).
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

from translate.commands.common import add_model_arguments
from translate.errors import UserError

logger = logging.getLogger("translate")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval",
        help="measure translation quality (PSNR, SSIM, L1, FID, KID)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("folders", nargs="*", metavar="DIR", help="PRED_DIR TARGET_DIR: predictions and their targets (with --video: SOURCE TRANSLATED)")
    p.add_argument("--video", action="store_true", help="SOURCE TRANSLATED are videos: warping error and flicker ratio")
    p.add_argument("--against", metavar="VIDEO", help="with --video: another translation of SOURCE to give each frame's PSNR to")
    p.add_argument("--data", help="with --model: dataset folder whose test split is translated and measured")
    p.add_argument("--out", help="folder for metrics.csv / metrics.json (and, with --model, the translations)")
    p.add_argument("--unpaired", action="store_true", help="the two folders do not correspond: skip PSNR/SSIM/L1 (use with --fid/--kid)")
    p.add_argument("--fid", action="store_true", help="Fréchet Inception Distance of predictions vs targets")
    p.add_argument("--kid", action="store_true", help="Kernel Inception Distance (mean ± std over subsets)")
    p.add_argument("--kid-subset-size", type=int, default=1000, help="images per KID subset (default 1000, the literature's)")
    p.add_argument("--kid-subsets", type=int, default=100, help="number of KID subsets (default 100)")
    p.add_argument("--inception-weights", metavar="PATH", help="FID Inception weights file (pt_inception-2015-12-05-6726825d.pth)")
    p.add_argument(
        "--download", action="store_true", help="download the FID Inception weights into the PyTorch hub cache if absent (the only network access)"
    )
    # --model is what switches to the "translate --data's test split first" mode: optional here
    add_model_arguments(p, model_required=False)
    p.set_defaults(run=run)


@dataclass
class _Plan:
    """What to translate, what to compare the translations with, and how to name them."""

    source: Path
    target: Path
    paired: bool
    source_label: str
    target_label: str


def _check_args(args: argparse.Namespace) -> None:
    if args.video or args.against:
        if not args.video:
            raise UserError("--against compares videos: add --video SOURCE TRANSLATED")
        if args.model or args.data or args.fid or args.kid or args.unpaired:
            raise UserError("--video measures two video files: drop --model/--data/--fid/--kid/--unpaired")
        if len(args.folders) != 2:
            raise UserError(f"--video expects SOURCE TRANSLATED (two video files), got {len(args.folders)}")
        return
    if args.model:
        if args.folders:
            raise UserError("give either PRED_DIR TARGET_DIR or --model with --data, not both")
        if not args.data:
            raise UserError("--model needs --data: the dataset whose test split to translate")
        if args.unpaired:
            raise UserError("--unpaired is for two folders; with --model the dataset layout decides")
    else:
        if args.data:
            raise UserError("--data needs --model: the model that translates its test split")
        if len(args.folders) != 2:
            raise UserError(f"expected PRED_DIR TARGET_DIR, got {len(args.folders)} folders — or use --model M --data DIR")
        for folder in args.folders:
            if not Path(folder).is_dir():
                raise UserError(f"{folder}: folder not found")
        if args.unpaired and not (args.fid or args.kid):
            raise UserError("--unpaired leaves only distribution metrics: add --fid and/or --kid")
    if args.kid_subset_size < 2:
        raise UserError(f"--kid-subset-size {args.kid_subset_size}: must be at least 2")
    if args.kid_subsets < 1:
        raise UserError(f"--kid-subsets {args.kid_subsets}: must be at least 1")
    if args.batch_size < 1:
        raise UserError(f"--batch-size {args.batch_size}: must be at least 1")


def trained_direction(model: str | Path) -> str:
    """``data.direction`` of the run a run/checkpoint directory belongs to; AtoB for bare generators."""
    from translate.config import run_from_json
    from translate.formats import FORMAT_CHECKPOINT, MODEL_FILE, read_metadata, resolve_checkpoint

    path = Path(model)
    if path.is_file():
        if path.suffix != ".safetensors" or read_metadata(path).get("format") != FORMAT_CHECKPOINT:
            return "AtoB"  # generator files and reference .pth carry no data config
        path = path.parent
    meta = read_metadata(resolve_checkpoint(path) / MODEL_FILE)
    return run_from_json(meta.get("run_config", "")).data.direction


def plan_dataset(data: Path, source_side: str, staging: Path) -> _Plan:
    """Find the test split of ``data`` and the folders to translate and compare.

    Side-by-side pairs are split into ``staging/A`` and ``staging/B`` (16-bit PNG, exact for
    8- and 16-bit sources) so that both halves can be handled as folders.
    """
    from translate.data.paired import detect_paired_layout

    target_side = "B" if source_side == "A" else "A"
    test = data / "test"
    if test.is_dir():
        if detect_paired_layout(test) == "folders":
            return _Plan(test / source_side, test / target_side, True, str(test / source_side), str(test / target_side))
        _split_side_by_side(test, staging)
        half = {"A": "left", "B": "right"}
        return _Plan(
            staging / source_side, staging / target_side, True, f"{test} ({half[source_side]} halves)", f"{test} ({half[target_side]} halves)"
        )
    source, target = data / f"test{source_side}", data / f"test{target_side}"
    if source.is_dir() and target.is_dir():
        return _Plan(source, target, False, str(source), str(target))
    raise UserError(
        f"{data}: no test split — expected {test} (paired: side-by-side A|B images, or A/ and B/) "
        f"or {data / 'testA'} and {data / 'testB'} (unpaired); see datasets/README.md"
    )


def _split_side_by_side(folder: Path, staging: Path) -> None:
    import cv2
    import numpy as np

    from translate.data.io import read_image, readable_images

    for path, (width, _) in readable_images(folder):
        if width % 2:
            raise UserError(f"{path}: odd width {width} cannot be split into A|B halves — each image must be A and B of equal width side by side")
        image = read_image(path, 3)
        name = path.relative_to(folder).with_suffix(".png")
        for side, half in (("A", image[:, : width // 2]), ("B", image[:, width // 2 :])):
            out = staging / side / name
            out.parent.mkdir(parents=True, exist_ok=True)
            pixels = np.round(half[:, :, ::-1] * 65535).astype(np.uint16)  # RGB -> BGR for OpenCV
            if not cv2.imwrite(str(out), pixels):
                raise UserError(f"{out}: cannot be written — check the temporary folder's free space")


def _translate(args: argparse.Namespace, source: Path, dst: Path) -> None:
    from translate.commands.common import load_translator
    from translate.data.io import format_names, list_images

    if dst.is_dir() and list_images(dst):
        raise UserError(
            f"{dst}: already holds images (from an earlier eval?) — choose another --out or empty it, so that old translations are not measured"
        )
    translator = load_translator(args)
    report = translator.translate_folder(source, dst, output_format="png", batch_size=args.batch_size)
    if report.failed:
        reasons = [f"{path}: {reason}" for path, reason in report.failed]
        raise UserError(f"{len(report.failed)} images could not be translated, so the metrics would be incomplete: {format_names(reasons, 3)}")
    logger.info("%s", report.summary())


def run(args: argparse.Namespace) -> int:
    from translate.data.io import find_images
    from translate.metrics import evaluate_folders, find_inception_weights, load_fid_inception
    from translate.metrics.report import check_kid_size
    from translate.runtime import resolve_device

    _check_args(args)
    if args.video:
        return _video(args)
    device = resolve_device(args.device)
    inception, weights_path = None, None
    if args.fid or args.kid:  # a missing weights file fails before any work
        weights_path = find_inception_weights(args.inception_weights, download=args.download)
    with tempfile.TemporaryDirectory(prefix="translate-eval-") as tmp:
        if args.model:
            source_side = "A" if (trained_direction(args.model) == "AtoB") == (args.direction == "AtoB") else "B"
            plan = plan_dataset(Path(args.data), source_side, Path(tmp) / "pairs")
            if not plan.paired and not (args.fid or args.kid):
                raise UserError(
                    f"{args.data}: unpaired test data ({plan.source.name}, {plan.target.name}) has no per-image "
                    "ground truth, so only distribution metrics apply — add --fid and/or --kid"
                )
            if args.kid:
                check_kid_size(len(find_images(plan.source)), len(find_images(plan.target)), args.kid_subset_size)
            if weights_path is not None:  # a damaged weights file fails before the translation
                inception = load_fid_inception(weights_path, device=device)
            pred_dir = (Path(args.out) if args.out else Path(tmp)) / "translated"
            print(f"translating {plan.source_label} -> comparing with {plan.target_label}")
            _translate(args, plan.source, pred_dir)
            target_dir, paired = plan.target, plan.paired
        else:
            pred_dir, target_dir, paired = Path(args.folders[0]), Path(args.folders[1]), not args.unpaired
        report = evaluate_folders(
            pred_dir,
            target_dir,
            paired=paired,
            fid=args.fid,
            kid=args.kid,
            inception=inception,
            inception_weights=weights_path,
            kid_subset_size=args.kid_subset_size,
            kid_subsets=args.kid_subsets,
            device=device,
        )
        if args.model:
            report.target_dir = plan.target_label
            if not args.out:
                report.pred_dir = f"translations of {plan.source_label} (temporary; keep them with --out)"
    print(report.table())
    if args.out:
        json_path, csv_path = report.write(args.out)
        print("wrote " + ", ".join(str(p) for p in [json_path] + ([csv_path] if report.names else [])))
    return 0


def _video(args: argparse.Namespace) -> int:
    from translate.metrics.video_report import evaluate_video

    source, translated = (Path(p) for p in args.folders)
    report = evaluate_video(source, translated, Path(args.against) if args.against else None)
    print(report.table())
    if args.out:
        paths = report.write(args.out)
        print("wrote " + ", ".join(str(p) for p in paths))
    return 0
