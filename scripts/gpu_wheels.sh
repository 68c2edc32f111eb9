#!/usr/bin/env bash
# Fetch what scripts/gpu_check.sh carries to the GPU machine into .gpu-wheels/ (git-ignored):
#   - wheels of the runtime dependencies that machine lacks (albumentations, kornia, av and their
#     own needs), for its Python and platform;
#   - a copy of ../shared/reference (the plain reference training step), because only the
#     repository travels to that machine: ../shared beside the checkout stays behind.
#
#   bash scripts/gpu_wheels.sh                 # Python 3.12 (the GPU machine's, see below)
#   GPU_PY=3.13 bash scripts/gpu_wheels.sh     # another Python there: refresh for it
#
# The GPU machine (the device tool's nvidia-h200, /work/.library/device/KINDS.md) runs Python
# 3.12.3 with torch 2.11, torchvision, numpy, scipy, PyYAML, opencv-python-headless, packaging,
# typing-extensions, Pillow, safetensors, tqdm, scikit-image, onnx and onnxruntime, and reaches no
# package registry. The versions pinned below are the ones this project is tested with here
# (`pip list`). typing_extensions is carried as a fallback only: gpu_check.sh installs it when
# the machine's is older than pydantic needs. About 49 MiB in all (64 MiB may travel per call).
set -euo pipefail
cd "$(dirname "$0")/.."

PY_VERSION="${GPU_PY:-3.12}"
DEST=".gpu-wheels"
REFERENCE="${REFERENCE_DIR:-../shared/reference}"
WHEELS=(
    albumentations==2.0.8
    albucore==0.0.24
    stringzilla==5.3.2          # albucore
    simsimd==6.5.16             # albucore
    pydantic==2.13.4            # albumentations
    pydantic_core==2.46.4       # pydantic (exact pin)
    annotated-types==0.7.0      # pydantic
    typing-inspection==0.4.2    # pydantic
    typing_extensions==4.15.0   # fallback: pydantic needs >= 4.14.1
    kornia==0.9.0
    kornia_rs==0.2.0            # kornia
    av==18.1.0                  # PyAV, bundles its own FFmpeg (about 34 MiB)
)

abi="cp${PY_VERSION/./}"
rm -rf "$DEST"
mkdir -p "$DEST/reference"
# pip matches manylinux_2_N exactly: list the tags these wheels are published under
python3 -m pip download --quiet --no-deps --only-binary=:all: \
    --python-version "$PY_VERSION" --implementation cp --abi "$abi" --abi abi3 --abi none \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 \
    --platform any -d "$DEST" "${WHEELS[@]}"

count=$(find "$DEST" -maxdepth 1 -name '*.whl' | wc -l)
if [ "$count" -ne "${#WHEELS[@]}" ]; then
    echo "gpu_wheels: expected ${#WHEELS[@]} wheels, got $count (two versions of one package stop the install)" >&2
    ls "$DEST" >&2
    exit 1
fi

if [ -f "$REFERENCE/ref_train.py" ]; then
    cp "$REFERENCE"/*.py "$DEST/reference/"
else
    echo "gpu_wheels: $REFERENCE/ref_train.py not found: the GPU check will skip the reference step" >&2
fi

{
    echo "python $PY_VERSION"
    echo "platform manylinux x86_64"
    echo "made $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    (cd "$DEST" && ls -1 ./*.whl | sed 's|^\./|wheel |')
} >"$DEST/MANIFEST.txt"

total=$(du -sb "$DEST" | cut -f1)
echo "gpu_wheels: $count wheels for Python $PY_VERSION in $DEST, $((total / 1048576)) MiB with the reference"
if [ "$total" -gt $((60 * 1048576)) ]; then
    echo "gpu_wheels: over 60 MiB: the working tree and these must stay under 64 MiB per device call" >&2
    exit 1
fi
