"""Check that short training runs stayed finite and learned: read each RUN/metrics.jsonl.

    python scripts/gpu_losses.py RUN [RUN ...] [--out verdict.json] [--min-drop 0.1]

For each run the tracked loss is the one that must fall on any data: pix2pix's L1 term (``l1``),
CycleGAN's two cycle-consistency terms (``cycle_a + cycle_b``). GAN terms are adversarial and need
not fall; they, like every other logged number, must stay finite. The run passes when:

- every logged number is finite (the metrics log writes NaN/inf as the strings "nan", "inf");
- at most ``--max-skipped`` of its steps were skipped for a non-finite loss or gradient;
- the mean of the tracked loss over the last 10 % of its logged rows is at most ``1 - min_drop``
  times its mean over the first 10 %.

Prints one line per run, writes a JSON verdict to ``--out`` and exits 1 if any run fails.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

NON_FINITE = {"nan", "inf", "-inf", "infinity", "-infinity"}
# what must fall, by model; the first whose keys are all logged is used when the config is unknown
TRACKED = {"pix2pix": ("l1",), "cyclegan": ("cycle_a", "cycle_b")}


def read_rows(path: Path) -> list[dict[str, Any]]:
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except ValueError:
            raise SystemExit(f"{path}:{number}: not a JSON line") from None
    return rows


def run_model(run_dir: Path) -> str | None:
    """The run's model from its config.yaml (``model: cyclegan``), without needing PyYAML."""
    config = run_dir / "config.yaml"
    if config.is_file():
        for line in config.read_text(encoding="utf-8").splitlines():
            if line.startswith("model:"):
                return line.split(":", 1)[1].strip().strip("'\"")
    return None


def non_finite(rows: list[dict[str, Any]]) -> list[str]:
    bad = []
    for row in rows:
        for key, value in row.items():
            if isinstance(value, str) and value.lower() in NON_FINITE:
                bad.append(f"step {row.get('step')} {key}={value}")
            elif isinstance(value, float) and not math.isfinite(value):
                bad.append(f"step {row.get('step')} {key}={value}")
    return bad


def check_run(path: Path, min_drop: float, max_skipped: float) -> dict[str, Any]:
    metrics = path if path.suffix == ".jsonl" else path / "metrics.jsonl"
    run_dir = metrics.parent
    verdict: dict[str, Any] = {"run": run_dir.name, "metrics": str(metrics), "ok": False}
    if not metrics.is_file():
        verdict["reason"] = "no metrics.jsonl"
        return verdict
    rows = read_rows(metrics)
    model = run_model(run_dir)
    logged = {key for row in rows for key in row}
    keys = TRACKED.get(model or "") or next((k for k in TRACKED.values() if set(k) <= logged), None)
    verdict["model"] = model
    if keys is None or not set(keys) <= logged:
        verdict["reason"] = f"no tracked loss logged (looked for {keys or sorted(TRACKED.values())})"
        return verdict
    verdict["metric"] = "+".join(keys)

    bad = non_finite(rows)
    skipped = [row for row in rows if row.get("event") == "non_finite_skipped"]
    loss_rows = [row for row in rows if all(isinstance(row.get(k), (int, float)) for k in keys)]
    steps = max((int(row.get("step", 0)) for row in rows), default=0)
    verdict.update(rows=len(loss_rows), last_step=steps, skipped_steps=len(skipped), non_finite=bad[:10])
    if len(loss_rows) < 10:
        verdict["reason"] = f"only {len(loss_rows)} rows with {verdict['metric']}: log more often or train longer"
        return verdict

    values = [sum(float(row[k]) for k in keys) for row in loss_rows]
    window = max(1, len(values) // 10)
    first = sum(values[:window]) / window
    last = sum(values[-window:]) / window
    ratio = last / first if first > 0 else math.inf
    verdict.update(window_rows=window, first_mean=first, last_mean=last, ratio=ratio)

    reasons = []
    if bad:
        reasons.append(f"{len(bad)} non-finite values (first: {bad[0]})")
    if steps and len(skipped) > max_skipped * steps:
        reasons.append(f"{len(skipped)} of {steps} steps skipped for non-finite values")
    if not ratio <= 1 - min_drop:
        reasons.append(f"{verdict['metric']} did not fall by {min_drop:.0%}: {first:.4g} -> {last:.4g}")
    verdict["ok"] = not reasons
    verdict["reason"] = "; ".join(reasons) or f"{verdict['metric']} fell {first:.4g} -> {last:.4g}"
    return verdict


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run directories (or metrics.jsonl files)")
    parser.add_argument("--out", type=Path, help="write the JSON verdict here")
    parser.add_argument("--min-drop", type=float, default=0.1, help="fraction the tracked loss must fall by (default 0.1)")
    parser.add_argument("--max-skipped", type=float, default=0.1, help="fraction of steps that may be skipped (default 0.1)")
    args = parser.parse_args(argv)
    if not 0 <= args.min_drop < 1 or not 0 <= args.max_skipped <= 1:
        parser.error(f"--min-drop must be in [0, 1) and --max-skipped in [0, 1], got {args.min_drop}, {args.max_skipped}")

    verdicts = [check_run(path, args.min_drop, args.max_skipped) for path in args.runs]
    summary = {"ok": all(v["ok"] for v in verdicts), "min_drop": args.min_drop, "max_skipped": args.max_skipped, "runs": verdicts}
    for v in verdicts:
        print(f"{'PASS' if v['ok'] else 'FAIL'}  {v['run']}: {v['reason']}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
