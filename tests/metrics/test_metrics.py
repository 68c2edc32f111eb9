"""Metrics: PSNR/SSIM/L1 against known values and scikit-image, FID/KID against independent
computations, the FID Inception network (randomly initialised) and its weights lookup."""

from __future__ import annotations

import json
import math
import urllib.error
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from translate.errors import UserError
from translate.metrics import (
    FID_WEIGHTS_FILE,
    WEIGHTS_ENV,
    EvalReport,
    FIDInceptionV3,
    compute_features,
    feature_statistics,
    fid_from_features,
    find_inception_weights,
    frechet_distance,
    kid_from_features,
    l1,
    load_fid_inception,
    match_pairs,
    mmd2_unbiased,
    psnr,
    ssim,
)
from translate.metrics import inception as inception_mod
from translate.metrics.report import check_pair_sizes

skimage_data = pytest.importorskip("skimage.data")


def photo(name: str = "astronaut", size: int = 64) -> torch.Tensor:
    """A real photo as a (1, 3, size, size) float tensor in [0, 1]."""
    image = np.asarray(getattr(skimage_data, name)())
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    image = cv2.resize(image[:, :, :3], (size, size), interpolation=cv2.INTER_AREA)
    return torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255


# ------------------------------------------------------------------ paired metrics


def test_psnr_of_gaussian_noise_matches_its_variance() -> None:
    # squeezed into [0.25, 0.75] so that noise of sigma 0.02 is never clipped (12 sigma away)
    target = 0.25 + 0.5 * photo("astronaut", 64)
    sigma = 0.02
    noise = torch.randn(target.shape, generator=torch.Generator().manual_seed(0)) * sigma
    pred = (target + noise).clamp(0, 1)
    expected = 10 * math.log10(1 / sigma**2)  # 33.98 dB
    assert psnr(pred, target).item() == pytest.approx(expected, abs=0.1)
    assert l1(pred, target).item() == pytest.approx(sigma * math.sqrt(2 / math.pi), rel=0.03)  # E|N(0, s)|


def test_identical_images_give_inf_psnr_unit_ssim_zero_l1() -> None:
    image = photo("coffee", 48)
    assert math.isinf(psnr(image, image).item()) and psnr(image, image).item() > 0
    assert ssim(image, image).item() == pytest.approx(1.0, abs=1e-6)
    assert l1(image, image).item() == 0.0


def test_per_image_values_in_batch_order() -> None:
    target = torch.full((3, 1, 16, 16), 0.5)
    pred = target + torch.tensor([0.0, 0.1, 0.2]).view(3, 1, 1, 1)
    assert torch.allclose(l1(pred, target), torch.tensor([0.0, 0.1, 0.2]), atol=1e-6)
    values = psnr(pred, target)
    assert values.shape == (3,) and math.isinf(values[0])
    assert values[1].item() == pytest.approx(20.0, abs=1e-4) and values[2].item() == pytest.approx(13.9794, abs=1e-3)


def test_ssim_matches_scikit_image() -> None:
    metrics = pytest.importorskip("skimage.metrics")
    target = photo("chelsea", 64)
    pred = (target + 0.08 * torch.randn(target.shape, generator=torch.Generator().manual_seed(1))).clamp(0, 1)
    pred = torch.cat([pred, target.flip(-1)])
    target = torch.cat([target, target])
    ours = ssim(pred, target)
    for i in range(2):
        reference = metrics.structural_similarity(
            pred[i].permute(1, 2, 0).double().numpy(),
            target[i].permute(1, 2, 0).double().numpy(),
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
            data_range=1.0,
            channel_axis=2,
        )
        assert ours[i].item() == pytest.approx(reference, abs=2e-4)
    assert 0 < ours[1] < ours[0] < 1


@pytest.mark.parametrize(
    ("pred", "target", "match"),
    [
        (torch.rand(3, 16, 16), torch.rand(3, 16, 16), r"\(B, C, H, W\)"),
        (torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 17), "same shape"),
        (torch.rand(1, 3, 16, 16) * 2 - 1, torch.rand(1, 3, 16, 16), r"expected \[0, 1\]"),
        (torch.randint(0, 255, (1, 3, 16, 16)), torch.rand(1, 3, 16, 16), "float"),
    ],
)
def test_paired_metrics_refuse_bad_input(pred: torch.Tensor, target: torch.Tensor, match: str) -> None:
    for fn in (psnr, ssim, l1):
        with pytest.raises(ValueError, match=match):
            fn(pred, target)


def test_ssim_refuses_images_smaller_than_window_and_even_windows() -> None:
    with pytest.raises(ValueError, match="smaller than 11x11"):
        ssim(torch.rand(1, 3, 10, 32), torch.rand(1, 3, 10, 32))
    with pytest.raises(ValueError, match="odd"):
        ssim(torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32), window_size=8)


# ------------------------------------------------------------------ FID


def test_fid_of_identical_features_is_zero_even_below_full_rank() -> None:
    features = np.random.default_rng(0).normal(size=(50, 64))  # 50 < 64: singular covariance
    assert fid_from_features(features, features) == pytest.approx(0.0, abs=1e-8)


def test_fid_matches_scipy_sqrtm_on_known_statistics() -> None:
    linalg = pytest.importorskip("scipy.linalg")
    rng = np.random.default_rng(1)
    d = 16
    a, b = rng.normal(size=(d, d)), rng.normal(size=(d, d))
    x = rng.normal(size=(4000, d)) @ a.T + 1.0
    y = rng.normal(size=(3000, d)) @ (0.5 * b).T - 0.5
    mu1, mu2, s1, s2 = x.mean(0), y.mean(0), np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    reference = np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(linalg.sqrtm(s1 @ s2)).real
    assert fid_from_features(x, y) == pytest.approx(reference, rel=1e-8)


def test_fid_of_small_sets_from_samples_equals_the_covariance_route() -> None:
    # 30 and 20 images of 256-d features: fid_from_features takes the (30, 20) SVD route,
    # frechet_distance the (256, 256) eigen-decomposition route; the values must agree
    rng = np.random.default_rng(4)
    x = rng.normal(size=(30, 256)) * np.linspace(0.5, 2, 256) + 0.2
    y = rng.normal(size=(20, 256)) @ rng.normal(size=(256, 256)) * 0.1
    via_samples = fid_from_features(x, y)
    via_covariances = frechet_distance(*feature_statistics(x), *feature_statistics(y))
    # (the eigen route carries sqrt(rounding noise) from the ~230 zero eigenvalues: ~1e-8 relative)
    assert via_samples == pytest.approx(via_covariances, rel=1e-7)
    assert fid_from_features(y, x) == pytest.approx(via_samples, rel=1e-9)


def test_frechet_distance_of_diagonal_gaussians_in_closed_form() -> None:
    # for commuting covariances the trace term is sum(sqrt(a * b)): d² = |dmu|² + sum (sqrt a - sqrt b)²
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    a, b = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 9.0])
    expected = 1 + 4 + (1 - 2) ** 2 + (2 - 1) ** 2 + 0
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, rel=1e-12)
    with pytest.raises(ValueError, match="expected mu"):
        frechet_distance(mu1, np.eye(2), mu2, np.eye(3))


def test_fid_refuses_too_few_images_and_mismatched_features() -> None:
    with pytest.raises(UserError, match="at least 2"):
        fid_from_features(np.zeros((1, 4)), np.zeros((5, 4)))
    with pytest.raises(ValueError, match="feature sizes differ"):
        fid_from_features(np.zeros((5, 4)), np.zeros((5, 3)))


# ------------------------------------------------------------------ KID


def test_mmd2_matches_a_naive_double_loop() -> None:
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(7, 5)), rng.normal(size=(7, 5)) + 0.3
    k = lambda u, v: (u @ v / 5 + 1) ** 3  # noqa: E731
    m = 7
    within = sum(k(x[i], x[j]) + k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    cross = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / (m * m)
    assert mmd2_unbiased(x, y) == pytest.approx(within - 2 * cross, rel=1e-10)
    # with subsets of all images, every subset is a permutation: KID equals the full MMD²
    mean, std = kid_from_features(x, y, subset_size=7, n_subsets=3)
    assert mean == pytest.approx(within - 2 * cross, rel=1e-10) and std == pytest.approx(0.0, abs=1e-12)


def test_kid_is_near_zero_for_one_distribution_and_positive_for_a_shift() -> None:
    rng = np.random.default_rng(3)
    real, same = rng.normal(size=(400, 32)), rng.normal(size=(400, 32))
    shifted = rng.normal(size=(400, 32)) + 0.5
    mean_same, std_same = kid_from_features(same, real, subset_size=200, n_subsets=20)
    mean_shift, std_shift = kid_from_features(shifted, real, subset_size=200, n_subsets=20)
    assert abs(mean_same) < 0.01 and std_same > 0
    assert mean_shift > 10 * max(abs(mean_same), std_shift)
    assert kid_from_features(shifted, real, subset_size=200, n_subsets=20) == (mean_shift, std_shift)  # seeded


def test_kid_with_fewer_images_than_the_subset_suggests_the_flag() -> None:
    with pytest.raises(UserError, match="--kid-subset-size 50"):
        kid_from_features(np.zeros((50, 4)), np.zeros((80, 4)))
    with pytest.raises(ValueError, match="subset_size"):
        kid_from_features(np.zeros((50, 4)), np.zeros((80, 4)), subset_size=1)


# ------------------------------------------------------------------ Inception network and weights


@pytest.fixture(scope="module")
def random_inception() -> FIDInceptionV3:
    torch.manual_seed(0)
    return FIDInceptionV3().eval()


class RecordingNet(torch.nn.Module):
    """Stands in for Inception: records the batches it is given, returns (B, 2048) features."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(1))
        self.batches: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.batches.append(x.clone())
        return x.mean(dim=(2, 3)).repeat(1, 683)[:, :2048] * self.weight


def write_photos(tmp_path: Path) -> list[Path]:
    paths = [tmp_path / "wide.png", tmp_path / "small.jpg", tmp_path / "gray.png"]
    for path, name, (w, h) in zip(paths, ("astronaut", "coffee", "camera"), ((80, 48), (40, 40), (32, 32)), strict=True):
        image = (photo(name, 64)[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8)
        image = cv2.resize(image, (w, h))
        cv2.imwrite(str(path), image[:, :, 0] if name == "camera" else image[:, :, ::-1])
    return paths


def test_compute_features_resizes_each_image_to_299_before_batching(tmp_path: Path) -> None:
    paths = write_photos(tmp_path)
    net = RecordingNet()
    features = compute_features(paths, net, batch_size=2)
    assert features.shape == (3, 2048) and features.dtype == np.float64
    assert [tuple(b.shape) for b in net.batches] == [(2, 3, 299, 299), (1, 3, 299, 299)]
    raw = torch.from_numpy(cv2.imread(str(paths[0]))[:, :, ::-1].copy()).permute(2, 0, 1)[None].float() / 255
    # what the reference network does to one image of any size: bilinear, no antialiasing
    expected = torch.nn.functional.interpolate(raw, size=(299, 299), mode="bilinear", align_corners=False)
    torch.testing.assert_close(net.batches[0][:1], expected)
    gray = net.batches[1][0]
    assert torch.equal(gray[0], gray[1]) and torch.equal(gray[1], gray[2])  # gray read as RGB


def test_random_inception_gives_finite_2048_features(random_inception, tmp_path: Path) -> None:
    # a forward pass at 299x299 costs about a second on two CPU cores: two images only
    features = compute_features(write_photos(tmp_path)[:2], random_inception)
    assert features.shape == (2, 2048) and np.isfinite(features).all()
    # informative even untrained: the two photos' features differ at the scale of the features
    assert np.abs(features[0] - features[1]).mean() > 0.1 * np.abs(features).mean() > 0


def test_inception_refuses_bad_input(random_inception) -> None:
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        random_inception(torch.rand(1, 4, 32, 32))
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        random_inception(torch.rand(3, 32, 32))
    with pytest.raises(ValueError, match="batch_size"):
        compute_features([Path("x.png")], random_inception, batch_size=0)


def test_fid_network_matches_the_reference_layer_names(random_inception) -> None:
    # the layer names of the ported TF graph (as torchvision's Inception3, 1008 classes)
    keys = random_inception.state_dict().keys()
    assert "Mixed_7c.branch_pool.conv.weight" in keys and "Conv2d_1a_3x3.bn.running_var" in keys
    assert tuple(random_inception.fc.weight.shape) == (1008, 2048)
    assert random_inception.Mixed_7c.pool == "max" and random_inception.Mixed_7b.pool == "avg"
    assert inception_mod.FID_WEIGHTS_URL.startswith("https://github.com/mseitzer/pytorch-fid/releases/")


@pytest.fixture
def empty_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A PyTorch hub cache without the FID weights, and no environment override."""
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.delenv(WEIGHTS_ENV, raising=False)
    return tmp_path / "hub" / "checkpoints" / FID_WEIGHTS_FILE


def test_missing_weights_say_which_file_to_place_where(empty_hub: Path) -> None:
    with pytest.raises(UserError) as info:
        find_inception_weights()
    message = str(info.value)
    assert FID_WEIGHTS_FILE in message and str(empty_hub) in message and "--download" in message


def test_explicit_and_environment_paths_must_exist(empty_hub: Path, tmp_path: Path, monkeypatch) -> None:
    with pytest.raises(UserError, match="--inception-weights .*file not found"):
        find_inception_weights(tmp_path / "nope.pth")
    monkeypatch.setenv(WEIGHTS_ENV, str(tmp_path / "missing.pth"))
    with pytest.raises(UserError, match=f"{WEIGHTS_ENV}=.*file not found"):
        find_inception_weights()


def test_download_only_when_asked_and_failures_are_user_errors(empty_hub: Path, monkeypatch) -> None:
    calls = []

    def offline(url, **kwargs):
        calls.append((url, kwargs))
        raise urllib.error.URLError("network unreachable")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(UserError):
        find_inception_weights()
    assert calls == []  # no network access without download=True
    with pytest.raises(UserError, match="could not fetch.*network unreachable"):
        find_inception_weights(download=True)
    url, kwargs = calls[0]
    assert url.endswith(FID_WEIGHTS_FILE) and kwargs["check_hash"] and kwargs["weights_only"]

    def fake_download(url, model_dir, file_name, **kwargs):
        Path(model_dir).mkdir(parents=True, exist_ok=True)
        (Path(model_dir) / file_name).write_bytes(b"x")
        return {}

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", fake_download)
    assert find_inception_weights(download=True) == empty_hub and empty_hub.is_file()


def test_load_weights_from_cache_and_refuse_wrong_files(random_inception, empty_hub: Path, caplog) -> None:
    empty_hub.parent.mkdir(parents=True)
    state = {k: v for k, v in random_inception.state_dict().items() if not k.endswith("num_batches_tracked")}
    torch.save(state, empty_hub)
    loaded = load_fid_inception()
    for key, value in state.items():
        assert torch.equal(loaded.state_dict()[key], value)
    assert not loaded.training and "not byte-identical" in caplog.text  # our file is not the real one
    torch.save({"conv.weight": torch.zeros(3)}, empty_hub)
    with pytest.raises(UserError, match="not the FID Inception weights .*missing"):
        load_fid_inception()
    empty_hub.write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="cannot be loaded"):
        load_fid_inception()


# ------------------------------------------------------------------ folders and the report


def write_png(path: Path, value: float, size: tuple[int, int] = (16, 16)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((size[1], size[0], 3), int(value * 255), np.uint8))


def test_match_pairs_ignores_extensions_and_lists_unmatched_names(tmp_path: Path) -> None:
    for name in ("a.png", "sub/b.png", "c.png", "d.png"):
        write_png(tmp_path / "pred" / name, 0.5)
    for name in ("a.jpg", "sub/b.png", "e.png"):
        write_png(tmp_path / "target" / name, 0.5)
    with pytest.raises(UserError) as info:
        match_pairs(tmp_path / "pred", tmp_path / "target")
    message = str(info.value)
    assert "(4 images)" in message and "(3 images)" in message
    assert "2 only in" in message and "c, d" in message and "1 only in" in message and "e" in message
    (tmp_path / "pred" / "c.png").unlink(), (tmp_path / "pred" / "d.png").unlink()
    write_png(tmp_path / "pred" / "e.webp", 0.5)
    assert [name for name, _, _ in match_pairs(tmp_path / "pred", tmp_path / "target")] == ["a", "e", "sub/b"]


def test_pairs_of_different_sizes_are_named(tmp_path: Path) -> None:
    write_png(tmp_path / "p" / "x.png", 0.5, (16, 16))
    write_png(tmp_path / "t" / "x.png", 0.5, (16, 20))
    with pytest.raises(UserError, match=r"1 pairs differ in size: x \(x.png 16x16 vs x.png 16x20\)"):
        check_pair_sizes(match_pairs(tmp_path / "p", tmp_path / "t"))


def test_report_json_keeps_inf_as_a_string(tmp_path: Path) -> None:
    report = EvalReport("p", "t", names=["a", "b"], per_image={"psnr": [math.inf, 20.0], "l1": [0.0, 0.1]}, counts={"pred": 2, "target": 2})
    json_path, csv_path = report.write(tmp_path / "out")
    data = json.loads(json_path.read_text())
    assert data["mean"]["psnr"] == "inf" and data["per_image"][0]["psnr"] == "inf"
    assert data["mean"]["l1"] == pytest.approx(0.05)
    assert csv_path.read_text().splitlines() == ["name,psnr,l1", "a,inf,0.0", "b,20.0,0.1"]
    assert "1 pairs are identical" in report.table()
