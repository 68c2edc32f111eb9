"""The Inception-v3 network that FID and KID numbers in the literature are computed with.

Published FID values (Heusel et al. 2017, and every paper since that uses the ``pytorch-fid``
package) come from the 2015-12-05 TensorFlow Inception graph, ported to PyTorch as
``pt_inception-2015-12-05-6726825d.pth``. That graph differs from torchvision's ImageNet
Inception-v3 in four places, which is why torchvision's own weights give different numbers:

- the average pools of the A, C and E blocks do not count padding (``count_include_pad=False``);
- the last block (``Mixed_7c``) uses a max pool in its pool branch instead of an average pool;
- the classifier has 1008 classes;
- the input is resized to 299x299 (bilinear, no antialiasing) and scaled from [0, 1] to [-1, 1].

Layer names match torchvision's ``Inception3`` so that the ported state dict loads as is.
Features are the 2048-d output of the final average pool ("pool3").
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.inception import BasicConv2d, InceptionA, InceptionB, InceptionC, InceptionD, InceptionE

from translate.errors import UserError

logger = logging.getLogger("translate")

FID_WEIGHTS_FILE = "pt_inception-2015-12-05-6726825d.pth"
FID_WEIGHTS_URL = f"https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/{FID_WEIGHTS_FILE}"
FID_WEIGHTS_SHA256_PREFIX = "6726825d"  # the hash torch.hub checks, from the file name
WEIGHTS_ENV = "TRANSLATE_INCEPTION_WEIGHTS"
INPUT_SIZE = 299
FEATURE_DIM = 2048


class _FIDInceptionA(InceptionA):
    def forward(self, x: Tensor) -> Tensor:
        branch1x1 = self.branch1x1(x)
        branch5x5 = self.branch5x5_2(self.branch5x5_1(x))
        branch3x3dbl = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        # TF's average pool ignores the zero padding at the borders
        pooled = F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)
        return torch.cat([branch1x1, branch5x5, branch3x3dbl, self.branch_pool(pooled)], 1)


class _FIDInceptionC(InceptionC):
    def forward(self, x: Tensor) -> Tensor:
        branch1x1 = self.branch1x1(x)
        branch7x7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        branch7x7dbl = x
        for layer in (self.branch7x7dbl_1, self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4, self.branch7x7dbl_5):
            branch7x7dbl = layer(branch7x7dbl)
        pooled = F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)
        return torch.cat([branch1x1, branch7x7, branch7x7dbl, self.branch_pool(pooled)], 1)


class _FIDInceptionE(InceptionE):
    """Mixed_7b (average pool without padding count) or Mixed_7c (max pool)."""

    def __init__(self, in_channels: int, pool: str) -> None:
        super().__init__(in_channels)
        if pool not in ("avg", "max"):
            raise ValueError(f"pool must be 'avg' or 'max', got {pool!r}")
        self.pool = pool

    def forward(self, x: Tensor) -> Tensor:
        branch1x1 = self.branch1x1(x)
        branch3x3 = self.branch3x3_1(x)
        branch3x3 = torch.cat([self.branch3x3_2a(branch3x3), self.branch3x3_2b(branch3x3)], 1)
        branch3x3dbl = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        branch3x3dbl = torch.cat([self.branch3x3dbl_3a(branch3x3dbl), self.branch3x3dbl_3b(branch3x3dbl)], 1)
        if self.pool == "max":  # a quirk of the TF graph's last block
            pooled = F.max_pool2d(x, kernel_size=3, stride=1, padding=1)
        else:
            pooled = F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)
        return torch.cat([branch1x1, branch3x3, branch3x3dbl, self.branch_pool(pooled)], 1)


class FIDInceptionV3(nn.Module):
    """Inception-v3 as in the FID reference, returning the 2048-d pool features.

    Built randomly initialised; load the FID weights with :func:`load_fid_inception`. Use in
    eval mode: batch norm uses the stored statistics.

    Input images of any size are resized to 299x299 with bilinear interpolation
    (``align_corners=False``, no antialiasing), as the reference implementation does, so
    images of different sizes give comparable features.
    """

    def __init__(self) -> None:
        super().__init__()
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, kernel_size=3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, kernel_size=3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, kernel_size=3, padding=1)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, kernel_size=1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, kernel_size=3)
        self.Mixed_5b = _FIDInceptionA(192, pool_features=32)
        self.Mixed_5c = _FIDInceptionA(256, pool_features=64)
        self.Mixed_5d = _FIDInceptionA(288, pool_features=64)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = _FIDInceptionC(768, channels_7x7=128)
        self.Mixed_6c = _FIDInceptionC(768, channels_7x7=160)
        self.Mixed_6d = _FIDInceptionC(768, channels_7x7=160)
        self.Mixed_6e = _FIDInceptionC(768, channels_7x7=192)
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b = _FIDInceptionE(1280, pool="avg")
        self.Mixed_7c = _FIDInceptionE(2048, pool="max")
        # unused for features, kept so that the reference state dict loads strictly
        self.fc = nn.Linear(FEATURE_DIM, 1008)
        # He init keeps the activation scale through the 94 conv layers; with PyTorch's default
        # init a random network's features shrink to ~1e-8 and cannot tell images apart, which
        # would make tests on a random network (no weights download) meaningless
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")

    def forward(self, images: Tensor) -> Tensor:
        """Pool features of a batch.

        Args:
            images: (B, 3, H, W) or (B, 1, H, W) float in [0, 1], any H, W; one channel is
                repeated to RGB.

        Returns:
            (B, 2048) float32 features.

        Raises:
            ValueError: Not a 4-D tensor with 1 or 3 channels.
        """
        if images.ndim != 4 or images.shape[1] not in (1, 3):
            raise ValueError(f"expected (B, 3, H, W) images in [0, 1], got shape {tuple(images.shape)}")
        x = images.float()
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        if tuple(x.shape[-2:]) != (INPUT_SIZE, INPUT_SIZE):
            x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False)
        x = 2 * x - 1
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        for block in (
            self.Mixed_5b,
            self.Mixed_5c,
            self.Mixed_5d,
            self.Mixed_6a,
            self.Mixed_6b,
            self.Mixed_6c,
            self.Mixed_6d,
            self.Mixed_6e,
            self.Mixed_7a,
            self.Mixed_7b,
            self.Mixed_7c,
        ):
            x = block(x)
        return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)


def weights_cache_path() -> Path:
    """Where the FID weights are looked for and downloaded to: the PyTorch hub cache."""
    return Path(torch.hub.get_dir()) / "checkpoints" / FID_WEIGHTS_FILE


def _missing_message() -> str:
    return (
        f"FID/KID need the Inception weights {FID_WEIGHTS_FILE}, which are not on this machine — "
        f"download {FID_WEIGHTS_URL} and place it at {weights_cache_path()} (or pass "
        f"--inception-weights PATH, or set {WEIGHTS_ENV}=PATH), or rerun with --download to fetch it"
    )


def find_inception_weights(path: str | Path | None = None, *, download: bool = False) -> Path:
    """Locate the FID Inception weights file, downloading it only if asked to.

    Looked for, in order: ``path``; the file named by the environment variable
    ``TRANSLATE_INCEPTION_WEIGHTS``; ``<torch hub dir>/checkpoints/pt_inception-2015-12-05-6726825d.pth``.
    With ``download=True`` and none of those present, the file is fetched from the
    pytorch-fid GitHub release into the hub cache (hash-checked). No network access happens
    otherwise.

    Raises:
        UserError: ``path`` or the environment variable names a missing file, or the weights
            are absent and ``download`` is False or the download fails; the message says
            which file to place where.
    """
    if path is not None:
        path = Path(path).expanduser()
        if not path.is_file():
            raise UserError(f"--inception-weights {path}: file not found — pass the path of {FID_WEIGHTS_FILE} ({FID_WEIGHTS_URL})")
        return path
    env = os.environ.get(WEIGHTS_ENV)
    if env:
        env_path = Path(env).expanduser()
        if not env_path.is_file():
            raise UserError(f"{WEIGHTS_ENV}={env}: file not found — point it at {FID_WEIGHTS_FILE} ({FID_WEIGHTS_URL}) or unset it")
        return env_path
    cached = weights_cache_path()
    if cached.is_file():
        return cached
    if not download:
        raise UserError(_missing_message())
    logger.info("downloading %s to %s", FID_WEIGHTS_URL, cached)
    try:
        torch.hub.load_state_dict_from_url(
            FID_WEIGHTS_URL,
            model_dir=str(cached.parent),
            map_location="cpu",
            progress=True,
            check_hash=True,
            file_name=FID_WEIGHTS_FILE,
            weights_only=True,
        )
    except Exception as exc:  # URLError, HTTPError, hash mismatch (RuntimeError), disk errors
        raise UserError(f"--download: could not fetch {FID_WEIGHTS_URL} ({type(exc).__name__}: {exc}) — {_missing_message()}") from None
    return cached


def _sha256_prefix(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[: len(FID_WEIGHTS_SHA256_PREFIX)]


def load_fid_inception(path: str | Path | None = None, *, download: bool = False, device: torch.device | str = "cpu") -> FIDInceptionV3:
    """The FID Inception network with the reference weights, in eval mode on ``device``.

    Args:
        path: Weights file; ``None`` searches as :func:`find_inception_weights` does.
        download: Allow fetching the weights into the hub cache if they are absent.
        device: Where the network runs.

    Raises:
        UserError: The weights are absent (see :func:`find_inception_weights`), cannot be
            read with ``torch.load(weights_only=True)``, or do not fit the network.
    """
    weights_path = find_inception_weights(path, download=download)
    try:
        state = torch.load(weights_path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle errors, truncated zip, refused (non-tensor) objects
        raise UserError(
            f"{weights_path}: cannot be loaded as a state dict ({type(exc).__name__}) — replace it with {FID_WEIGHTS_FILE} from {FID_WEIGHTS_URL}"
        ) from None
    if not isinstance(state, dict):
        raise UserError(f"{weights_path}: holds a {type(state).__name__}, not a state dict — replace it with {FID_WEIGHTS_FILE}")
    net = FIDInceptionV3()
    expected = net.state_dict()
    # Batch-norm step counters are not part of the ported weights and do not affect eval.
    required = {k for k in expected if not k.endswith("num_batches_tracked")}
    missing, unexpected = sorted(required - state.keys()), sorted(state.keys() - expected.keys())
    wrong_shape = [k for k in required & state.keys() if tuple(state[k].shape) != tuple(expected[k].shape)]
    if missing or unexpected or wrong_shape:
        detail = "; ".join(
            f"{label}: {', '.join(keys[:3])}{' …' if len(keys) > 3 else ''}"
            for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", sorted(wrong_shape)))
            if keys
        )
        raise UserError(f"{weights_path}: not the FID Inception weights ({detail}) — use {FID_WEIGHTS_FILE} from {FID_WEIGHTS_URL}")
    net.load_state_dict(state, strict=False)
    if _sha256_prefix(weights_path) != FID_WEIGHTS_SHA256_PREFIX:
        logger.warning(
            "%s: fits the network but is not byte-identical to %s; FID/KID may not be comparable with published numbers",
            weights_path,
            FID_WEIGHTS_FILE,
        )
    # channels_last: about 30 % faster convolutions on CPU (oneDNN), same numbers to float precision
    return net.eval().requires_grad_(False).to(device, memory_format=torch.channels_last)
