#!/usr/bin/env bash
# GPU check: install the project on a GPU machine with no registry, run the test suite with CUDA
# visible, short CycleGAN and pix2pix trainings in fp32/bf16/fp16 (losses finite and falling),
# `translate apply` and `translate video` on the GPU, and scripts/bench.py's GPU rows with the
# plain reference step. At most 8 minutes on one H200 (each stage has a time cap, and the whole
# script a budget); a stage that fails is recorded and the next one runs; the exit status is 1
# if any stage failed.
#
# With the device tool, from this repository's root (after `bash scripts/gpu_wheels.sh` here):
#
#   run(command="bash scripts/gpu_check.sh", carry=[".gpu-wheels"], timeout_s=540)
#
# Results go to docs/gpu/ on that machine and come back as $OUT/gpu_results.tar.gz (everything)
# plus $OUT/summary.json and $OUT/gpu_check.log; to keep them:
#
#   tar -xzf <files_at>/gpu_results.tar.gz -C docs/gpu && git add docs/gpu && git commit -m ...
#
# Without a GPU: `bash scripts/gpu_check.sh --cpu-dry-run` checks the carried wheels against the
# GPU machine's Python and runs every stage on the CPU at toy sizes into /tmp/gpu_check_dry (no
# install, the CUDA tests skip, the bench is not run, the suite is only collected).
#
# The wheels in .gpu-wheels/ match the GPU machine's Python (3.12 when written; MANIFEST.txt
# names it): the install stage stops with a clear message if the running python differs.
# ../shared/reference (the plain reference step) does not travel with the repository:
# gpu_wheels.sh copies it into .gpu-wheels/reference and this script puts it back at
# ../shared/reference there, where scripts/bench.py looks for it.
#
# Settings (environment): PYTHON (python3), GPU_CHECK_BUDGET_S (480: the whole script),
# GPU_CHECK_OUT (docs/gpu), GPU_CHECK_STEPS (300 training steps), GPU_CHECK_SUITE_S (150),
# GPU_CHECK_BENCH_S (150), GPU_CHECK_WORKERS (4 pytest-xdist workers; 0 = none).
set -euo pipefail
cd "$(dirname "$0")/.."

DRY=0
for arg in "$@"; do
    case "$arg" in
        --cpu-dry-run) DRY=1 ;;
        -h | --help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
        *) echo "gpu_check: unknown argument $arg (use --cpu-dry-run or --help)" >&2; exit 2 ;;
    esac
done

export ROOT="$PWD" DRY
export PY="${PYTHON:-python3}"
export WHEELS="$ROOT/.gpu-wheels"
export BUDGET_S="${GPU_CHECK_BUDGET_S:-480}"
export START_S="$(date +%s)"
export WORK="$(mktemp -d /tmp/gpu_check.XXXXXX)"
export SITE="$WORK/site"   # the carried wheels are installed here (pip --target), first on PYTHONPATH
export STAGES="$WORK/stages.jsonl"
export PYTHONPATH="$SITE:$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1 TQDM_DISABLE=1
if [ "$DRY" = 1 ]; then
    export RESULTS="${GPU_CHECK_OUT:-/tmp/gpu_check_dry}" DEVICE=cpu HALF=bf16 PRECISIONS="fp32 bf16"
    export STEPS="${GPU_CHECK_STEPS:-60}" LOG_EVERY=2 CHANNELS=4 BATCH=2 CG_LOAD=36 CG_CROP=32 LOADER_WORKERS=0 THREADS=1
else
    export RESULTS="${GPU_CHECK_OUT:-docs/gpu}" DEVICE=cuda HALF=fp16 PRECISIONS="fp32 bf16 fp16"
    export STEPS="${GPU_CHECK_STEPS:-300}" LOG_EVERY=5 CHANNELS=16 BATCH=4 CG_LOAD=72 CG_CROP=64 LOADER_WORKERS=2 THREADS=2
fi
export SUITE_S="${GPU_CHECK_SUITE_S:-150}" BENCH_S="${GPU_CHECK_BENCH_S:-150}" XDIST_WORKERS="${GPU_CHECK_WORKERS:-4}"
mkdir -p "$RESULTS" "$SITE" "$WORK/logs"
RESULTS="$(cd "$RESULTS" && pwd)"
export RESULTS
# results of an earlier run (never README.md)
rm -rf "$RESULTS"/{gpu_check.log,summary.json,env.json,nvidia-smi.txt,losses.json,pytest.txt,pytest_cuda.txt,reference.txt,performance.json,PERFORMANCE.md,logs,runs}
mkdir -p "$RESULTS/logs" "$RESULTS/runs"
LOG="$RESULTS/gpu_check.log"

# ------------------------------------------------------------------ stage bookkeeping

record() {  # NAME STATUS(pass|fail|skipped) SECONDS NOTE
    "$PY" -c 'import json, sys; n, s, t, note = sys.argv[1:5]; print(json.dumps({"stage": n, "status": s, "seconds": round(float(t), 1), "note": note}))' \
        "$1" "$2" "$3" "$4" >>"$STAGES"
}
note() { printf '%s\n' "$*" >>"$WORK/note.$STAGE"; echo "note: $*"; }
skip() { printf '%s\n' "$*" >"$WORK/skip.$STAGE"; echo "skipped: $*"; exit 0; }
die() { note "$*"; exit 1; }
export -f record note skip die

stage() {  # NAME CAP_S FUNCTION: run FUNCTION under `timeout`, within what is left of the budget
    local name=$1 cap=$2 fn=$3 left rc=0 t0 t1 seconds status text
    left=$((BUDGET_S - ($(date +%s) - START_S) - 10))  # 10 s kept for the summary
    if [ "$left" -lt 5 ]; then
        echo "=== $name: not run, the ${BUDGET_S} s budget is spent"
        record "$name" fail 0 "not run: the ${BUDGET_S} s budget was spent"
        return 0
    fi
    [ "$cap" -gt "$left" ] && cap=$left
    echo
    echo "=== $name (at most ${cap} s) $(date -u +%H:%M:%S)"
    t0=$(date +%s.%N)
    STAGE=$name timeout --kill-after=10 "$cap" bash -c "set -euo pipefail; $fn" || rc=$?
    t1=$(date +%s.%N)
    seconds=$("$PY" -c "print($t1 - $t0)")
    text=$(cat "$WORK/note.$name" 2>/dev/null | paste -sd ';' - || true)
    if [ "$rc" = 0 ] && [ -f "$WORK/skip.$name" ]; then
        status=skipped text=$(cat "$WORK/skip.$name")
    elif [ "$rc" = 0 ]; then
        status=pass
    elif [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
        status=fail text="timed out after ${cap} s${text:+; $text}"
    else
        status=fail text="exit status $rc${text:+; $text}"
    fi
    echo "=== $name: $status ($(printf '%.0f' "$seconds") s)${text:+: $text}"
    record "$name" "$status" "$seconds" "$text"
}

# ------------------------------------------------------------------ stages

stage_env() {
    if command -v nvidia-smi >/dev/null; then
        nvidia-smi >"$RESULTS/nvidia-smi.txt" 2>&1 || note "nvidia-smi failed"
        nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv >>"$RESULTS/nvidia-smi.txt" 2>&1 || true
        head -20 "$RESULTS/nvidia-smi.txt"
    elif [ "$DRY" = 0 ]; then
        note "no nvidia-smi on PATH"
    fi
    "$PY" - "$RESULTS/env.json" "$WHEELS/MANIFEST.txt" <<'EOF'
import json, os, platform, subprocess, sys
import torch
out, manifest = sys.argv[1], sys.argv[2]
cuda = torch.cuda.is_available()
env = {
    "python": platform.python_version(), "executable": sys.executable, "platform": platform.platform(),
    "cpus": os.cpu_count(), "torch": torch.__version__, "torch_cuda": torch.version.cuda,
    "cudnn": torch.backends.cudnn.version() if cuda else None, "cuda_available": cuda,
}
if cuda:
    p = torch.cuda.get_device_properties(0)
    env.update(gpu=p.name, gpu_memory_gib=round(p.total_memory / 2**30, 1), capability=f"{p.major}.{p.minor}",
               multiprocessors=p.multi_processor_count, bf16_supported=torch.cuda.is_bf16_supported())
try:
    env["commit"] = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
except Exception:
    env["commit"] = None
if os.path.exists(manifest):
    env["wheels_python"] = next((line.split()[1] for line in open(manifest) if line.startswith("python ")), None)
json.dump(env, open(out, "w"), indent=2)
print(json.dumps(env))
EOF
    if [ "$DRY" = 0 ]; then
        "$PY" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' || die "torch.cuda.is_available() is false"
    fi
}

stage_install() {
    local manifest="$WHEELS/MANIFEST.txt" want have wheels=() w
    [ -f "$manifest" ] || die "no $manifest: run 'bash scripts/gpu_wheels.sh' and carry .gpu-wheels"
    want=$(awk '$1 == "python" {print $2}' "$manifest")
    have=$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
    for w in "$WHEELS"/*.whl; do
        case "$(basename "$w")" in typing_extensions-*) ;; *) wheels+=("$w") ;; esac
    done
    [ "${#wheels[@]}" -gt 0 ] || die "no wheels in $WHEELS"
    echo "carried: ${#wheels[@]} wheels for Python $want; this is Python $have ($("$PY" -c 'import sys; print(sys.executable)'))"

    # the plain reference step, where scripts/bench.py expects it
    local shared="$ROOT/../shared/reference"
    if [ ! -f "$shared/ref_train.py" ]; then
        if [ -f "$WHEELS/reference/ref_train.py" ] && mkdir -p "$shared" 2>/dev/null && cp "$WHEELS"/reference/*.py "$shared/"; then
            echo "reference step placed at $(cd "$shared" && pwd)"
        else
            note "no reference step at ../shared/reference (and none carried, or ../ not writable)"
        fi
    fi

    if [ "$DRY" = 1 ]; then
        # what pip would do on the GPU machine: the wheels' tags against its Python and platform
        local abi="cp${want/./}"
        "$PY" -m pip install --dry-run --quiet --no-index --no-deps --ignore-installed --target "$WORK/site-check" \
            --only-binary=:all: --python-version "$want" --implementation cp --abi "$abi" --abi abi3 --abi none \
            --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform any \
            "${wheels[@]}" "$WHEELS"/typing_extensions-*.whl || die "the carried wheels do not install on Python $want manylinux x86_64"
        echo "the carried wheels install on Python $want manylinux x86_64 (checked with pip --dry-run; nothing installed here)"
    else
        [ "$want" = "$have" ] || die "the carried wheels are for Python $want but this python is $have: run 'GPU_PY=$have bash scripts/gpu_wheels.sh' and carry them again"
        "$PY" -m pip install --quiet --no-index --no-deps --no-compile --no-cache-dir --target "$SITE" "${wheels[@]}"
        # pydantic needs typing_extensions >= 4.14.1: the carried one only where the machine's is older
        if ! "$PY" -c 'import sys; from importlib.metadata import version; from packaging.version import Version; sys.exit(Version(version("typing_extensions")) < Version("4.14.1"))' 2>/dev/null; then
            "$PY" -m pip install --quiet --no-index --no-deps --no-compile --no-cache-dir --target "$SITE" "$WHEELS"/typing_extensions-*.whl
            note "installed the carried typing_extensions (the machine's is older than 4.14.1 or missing)"
        fi
    fi
    "$PY" - <<'EOF'
import albumentations, av, kornia, pydantic, torch, torchvision, cv2
import translate, translate.cli  # noqa: F401
print("albumentations", albumentations.__version__, "| kornia", kornia.__version__, "| av", av.__version__,
      "| pydantic", pydantic.__version__, "| torch", torch.__version__, "| torchvision", torchvision.__version__,
      "| opencv", cv2.__version__, "| translate from", translate.__file__)
EOF
    "$PY" -m translate --help >/dev/null
}

stage_editable() {
    [ "$DRY" = 1 ] && skip "dry run: this machine's environment is left as it is"
    local setuptools
    setuptools=$("$PY" -c 'import setuptools; print(setuptools.__version__)' 2>/dev/null) || die "no setuptools: cannot build the editable install (PYTHONPATH=$ROOT is used instead)"
    echo "setuptools $setuptools (pyproject.toml asks for >= 68)"
    "$PY" -m pip install --quiet --no-index --no-deps --no-build-isolation -e "$ROOT" \
        || die "pip install -e . failed with setuptools $setuptools (PYTHONPATH=$ROOT is used instead)"
    "$PY" -m pip show translate 2>/dev/null | sed -n 1,3p
}

stage_cuda_tests() {
    if [ "$DRY" = 0 ]; then
        "$PY" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' || die "no CUDA: the cuda tests would only skip"
    fi
    "$PY" -m pytest -q -p no:cacheprovider -rfEs tests/test_cuda.py 2>&1 | tee "$RESULTS/pytest_cuda.txt"
}

stage_data() {
    "$PY" - "$WORK" "$CG_LOAD" <<'EOF'
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from skimage import data

from translate.config import NetConfig
from translate.data.samples import make_sample_dataset
from translate.formats import save_generator
from translate.nets import build_generator

work, cg_load = Path(sys.argv[1]), int(sys.argv[2])
make_sample_dataset(work / "data" / "unpaired", "unpaired", size=cg_load, count=16)
make_sample_dataset(work / "data" / "paired", "paired", size=136, count=16)
# photos to translate: odd sizes, a JPEG, a grayscale PNG in a subfolder
photos = work / "photos"
(photos / "sub").mkdir(parents=True)
Image.fromarray(data.astronaut()).resize((300, 200)).save(photos / "astronaut.png")
Image.fromarray(data.chelsea()).save(photos / "chelsea.jpg", quality=92)
Image.fromarray(data.camera()).resize((257, 190)).save(photos / "sub" / "camera.png")
# a generator that does not depend on the trainings: apply and video run even if those failed
torch.manual_seed(0)
net_cfg = NetConfig(generator="resnet_6blocks", base_channels_g=8)
save_generator(work / "tiny_generator.safetensors", build_generator(net_cfg), net_cfg)
print("data in", work, ":", sorted(p.name for p in work.iterdir()))
EOF
}

train_one() {  # MODEL PRECISION: one `translate train` run into $WORK/runs/MODEL_PRECISION
    local model=$1 precision=$2 args
    if [ "$model" = cyclegan ]; then
        args="--data $WORK/data/unpaired --set net.generator=resnet_6blocks --load-size $CG_LOAD --crop-size $CG_CROP"
    else
        args="--data $WORK/data/paired --set net.generator=unet_128 --load-size 136 --crop-size 128"
    fi
    # shellcheck disable=SC2086
    "$PY" -m translate train --model "$model" --out "$WORK/runs/${model}_$precision" $args \
        --set net.base_channels_g="$CHANNELS" --set net.base_channels_d="$CHANNELS" --batch-size "$BATCH" \
        --steps "$STEPS" --log-every "$LOG_EVERY" --sample-every 0 --save-every 100000 --seed 0 \
        --precision "$precision" --device "$DEVICE" --workers "$LOADER_WORKERS" --threads "$THREADS"
}
export -f train_one

stage_train() {
    # all runs at once: tiny networks leave most of the GPU (and the 16 cores) idle
    local model precision name pids="" failed=0 t0
    t0=$(date +%s)
    mkdir -p "$WORK/runs"
    for model in cyclegan pix2pix; do
        for precision in $PRECISIONS; do
            name="${model}_$precision"
            train_one "$model" "$precision" >"$WORK/logs/train_$name.log" 2>&1 &
            pids="$pids $name:$!"
        done
    done
    for entry in $pids; do
        name=${entry%%:*}
        if wait "${entry##*:}"; then
            echo "--- $name: trained"
            record "train_$name" pass "$(($(date +%s) - t0))" "$STEPS steps"
        else
            echo "--- $name: FAILED; end of its log:"
            tail -15 "$WORK/logs/train_$name.log"
            record "train_$name" fail "$(($(date +%s) - t0))" "$(tail -1 "$WORK/logs/train_$name.log" | cut -c1-300)"
            failed=$((failed + 1))
        fi
        cp "$WORK/logs/train_$name.log" "$RESULTS/logs/"
        [ -f "$WORK/runs/$name/metrics.jsonl" ] && cp "$WORK/runs/$name/metrics.jsonl" "$RESULTS/runs/$name.metrics.jsonl"
    done
    [ "$failed" = 0 ] || die "$failed training runs failed"
}

stage_losses() {
    local runs=()
    for precision in $PRECISIONS; do
        runs+=("$WORK/runs/cyclegan_$precision" "$WORK/runs/pix2pix_$precision")
    done
    "$PY" "$ROOT/scripts/gpu_losses.py" "${runs[@]}" --out "$RESULTS/losses.json"
}

model_for() {  # a trained run if there is one, else the tiny untrained generator
    if [ -f "$WORK/runs/$1/checkpoints/latest" ]; then echo "$WORK/runs/$1"; else echo "$WORK/tiny_generator.safetensors"; fi
}
export -f model_for

count_files() { find "$1" -type f | wc -l; }
export -f count_files

stage_apply() {
    local inputs model out precision
    inputs=$(count_files "$WORK/photos")
    for spec in "cyclegan_fp32:fp32" "cyclegan_fp32:$HALF" "pix2pix_fp32:fp32"; do
        model=$(model_for "${spec%%:*}") precision=${spec##*:}
        out="$WORK/apply_${spec%%:*}_$precision"
        echo "--- translate apply --model $model --precision $precision"
        "$PY" -m translate apply --model "$model" --device "$DEVICE" --precision "$precision" "$WORK/photos" "$out"
        [ "$(count_files "$out")" = "$inputs" ] || die "$out holds $(count_files "$out") files for $inputs photos"
        "$PY" - "$WORK/photos" "$out" <<'EOF'
import sys
from pathlib import Path
from PIL import Image
src, dst = Path(sys.argv[1]), Path(sys.argv[2])
for path in sorted(p for p in src.rglob("*") if p.is_file()):
    match = [q for q in (dst / path.relative_to(src)).parent.glob(path.stem + ".*")]
    assert match, f"no output for {path}"
    a, b = Image.open(path), Image.open(match[0])
    assert a.size == b.size, (path, a.size, b.size)
print("every photo translated at its own size:", dst)
EOF
    done
    [ "$(model_for cyclegan_fp32)" = "$WORK/tiny_generator.safetensors" ] && note "no trained CycleGAN run: applied the untrained tiny generator"
    true
}

stage_video() {
    local model clip="$WORK/clip.mp4" out="$WORK/clip_translated.mp4"
    model=$(model_for cyclegan_fp32)
    "$PY" -c "from pathlib import Path; from tests.media import make_clip; make_clip(Path('$clip'), frames=48, size=(128, 96), fps=24, audio=True)"
    for precision in fp32 "$HALF"; do
        echo "--- translate video --model $model --precision $precision"
        rm -f "$out"
        "$PY" -m translate video --model "$model" --device "$DEVICE" --precision "$precision" --no-progress "$clip" "$out"
        "$PY" - "$clip" "$out" <<'EOF'
import sys
from pathlib import Path
from tests.media import read_clip
src, dst = read_clip(Path(sys.argv[1])), read_clip(Path(sys.argv[2]))
assert len(dst.frames) == len(src.frames), (len(dst.frames), len(src.frames))
assert (dst.width, dst.height) == (src.width, src.height), ((dst.width, dst.height), (src.width, src.height))
assert dst.times == src.times, "frame times changed"
assert [len(a) for a in dst.audio_packets] == [len(a) for a in src.audio_packets], "audio not carried over"
print(f"{len(dst.frames)} frames {dst.width}x{dst.height}, timing and audio kept: {sys.argv[2]}")
EOF
    done
}

stage_suite() {
    # tests/test_cuda.py ran in its own stage
    local args=(-q -p no:cacheprovider -rfE -m "not cuda")
    if [ "$DRY" = 1 ]; then
        "$PY" -m pytest "${args[@]}" --collect-only 2>&1 | tee "$RESULTS/pytest.txt" \
            | awk -F': ' '/: [0-9]+$/ { n += $2 } END { print n " tests collected (not cuda)" }'
        skip "dry run: the suite was only collected (this machine's CPUs are shared)"
    fi
    if [ "$XDIST_WORKERS" -gt 0 ] && "$PY" -c 'import xdist' 2>/dev/null; then args+=(-n "$XDIST_WORKERS"); fi
    if "$PY" -c 'import pytest_timeout' 2>/dev/null; then args+=(--timeout 120); fi
    echo "python -m pytest ${args[*]}"
    "$PY" -m pytest "${args[@]}" 2>&1 | tee "$RESULTS/pytest.txt"
}

stage_bench() {
    if ! "$PY" "$ROOT/scripts/bench.py" --help 2>&1 | grep -q -- '--device'; then
        die "scripts/bench.py has no --device option (its rewrite has not landed)"
    fi
    [ "$DRY" = 1 ] && skip "dry run: scripts/bench.py --device cuda needs a GPU"
    "$PY" "$ROOT/scripts/bench.py" --device cuda --out "$RESULTS"
    [ -f "$RESULTS/performance.json" ] || die "scripts/bench.py wrote no performance.json"
    [ -f "$RESULTS/PERFORMANCE.md" ] || die "scripts/bench.py wrote no PERFORMANCE.md"
}

stage_reference() {
    # the plain reference step on its own: the GPU's reference speed is known even if the bench fails
    local ref="$ROOT/../shared/reference/ref_train.py" size=256 iters=20 dev=cuda
    [ -f "$ref" ] || ref="$WHEELS/reference/ref_train.py"
    [ -f "$ref" ] || die "no ref_train.py at ../shared/reference or in .gpu-wheels/reference"
    [ "$DRY" = 1 ] && size=32 iters=1 dev=cpu
    : >"$RESULTS/reference.txt"
    for model in cyclegan pix2pix; do
        [ "$DRY" = 1 ] && [ "$model" = pix2pix ] && continue  # its U-Net-256 needs 256 px: minutes on a CPU
        echo "--- python $ref $size $iters $model $dev"
        printf '%s %s %s %s: ' "$model" "$size" "$iters" "$dev" >>"$RESULTS/reference.txt"
        "$PY" "$ref" "$size" "$iters" "$model" "$dev" | tee -a "$RESULTS/reference.txt"
    done
}
export -f stage_env stage_install stage_editable stage_cuda_tests stage_data stage_train stage_losses
export -f stage_apply stage_video stage_suite stage_bench stage_reference

summarise() {
    "$PY" - "$STAGES" "$RESULTS/env.json" "$RESULTS/summary.json" "$START_S" "$BUDGET_S" "$DRY" <<'EOF'
import json, os, sys, time
stages_path, env_path, out, start, budget, dry = sys.argv[1:7]
stages = [json.loads(line) for line in open(stages_path)] if os.path.exists(stages_path) else []
env = json.load(open(env_path)) if os.path.exists(env_path) else {}
failed = [s["stage"] for s in stages if s["status"] == "fail"]
summary = {
    "ok": not failed and bool(stages), "dry_run": dry == "1", "failed": failed,
    "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(start))),
    "seconds": round(time.time() - int(start)), "budget_s": int(budget), "env": env, "stages": stages,
}
json.dump(summary, open(out, "w"), indent=2)
print()
for s in stages:
    print(f"{s['status'].upper():8s}{s['stage']:22s}{s['seconds']:7.0f} s  {s['note']}")
print(f"gpu_check: {'all stages passed' if summary['ok'] else 'FAILED: ' + ', '.join(failed)} "
      f"in {summary['seconds']} s; results in {os.path.dirname(out)}")
sys.exit(0 if summary["ok"] else 1)
EOF
}

main() {
    echo "gpu_check: $(date -u +%Y-%m-%dT%H:%M:%SZ), device $DEVICE, budget ${BUDGET_S} s, results in $RESULTS, scratch $WORK"
    stage env 60 stage_env
    stage install 120 stage_install
    stage editable_install 60 stage_editable
    stage cuda_tests 120 stage_cuda_tests
    stage data 60 stage_data
    stage train 150 stage_train
    stage losses 30 stage_losses
    stage apply 90 stage_apply
    stage video 90 stage_video
    stage suite "$SUITE_S" stage_suite
    stage reference 90 stage_reference
    stage bench "$BENCH_S" stage_bench
    summarise
}

rc=0
main 2>&1 | tee "$LOG" || rc=$?

# what comes back from the device tool: at most 8 files, so everything travels as one archive
if [ -n "${OUT:-}" ] && [ -d "$OUT" ]; then
    tar -czf "$OUT/gpu_results.tar.gz" -C "$RESULTS" --exclude README.md . || rc=1
    cp "$RESULTS/summary.json" "$LOG" "$OUT/" 2>/dev/null || true
    echo "gpu_check: results copied to \$OUT (gpu_results.tar.gz, summary.json, gpu_check.log)"
fi
rm -rf "$WORK"
exit "$rc"
