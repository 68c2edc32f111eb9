"""Reference-layout ``.pth`` generators: structure inferred, keys mapped, code-bearing pickles refused."""

from __future__ import annotations

import importlib.util
import pickle
from pathlib import Path

import pytest
import torch
from torch import nn

from translate.errors import UserError
from translate.formats import load_weights
from translate.infer.importers import read_reference_generator
from translate.infer.translator import Translator
from translate.nets import build_generator

# ----------------------------------------------------------------------------------------
# A reference-style module tree: the module order and Sequential indices of
# junyanz/pytorch-CycleGAN-and-pix2pix models/networks.py, written independently of ours.


def ref_norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "none":
        return nn.Identity()
    return nn.InstanceNorm2d(channels, affine=kind == "instance_affine")


class RefResnetBlock(nn.Module):
    def __init__(self, dim: int, norm: str, dropout: bool, bias: bool, attr: str) -> None:
        super().__init__()
        layers = [nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, bias=bias), ref_norm(norm, dim), nn.ReLU(True)]
        if dropout:
            layers.append(nn.Dropout(0.5))
        layers += [nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, bias=bias), ref_norm(norm, dim)]
        self.attr = attr
        setattr(self, attr, nn.Sequential(*layers))

    def forward(self, x):
        return x + getattr(self, self.attr)(x)


class RefResnetGenerator(nn.Module):
    def __init__(self, in_nc, out_nc, ngf, norm, n_blocks, dropout=False, attr="conv_block") -> None:
        super().__init__()
        bias = norm.startswith("instance")
        layers = [nn.ReflectionPad2d(3), nn.Conv2d(in_nc, ngf, 7, bias=bias), ref_norm(norm, ngf), nn.ReLU(True)]
        for i in range(2):
            c = ngf * 2**i
            layers += [nn.Conv2d(c, 2 * c, 3, stride=2, padding=1, bias=bias), ref_norm(norm, 2 * c), nn.ReLU(True)]
        layers += [RefResnetBlock(ngf * 4, norm, dropout, bias, attr) for _ in range(n_blocks)]
        for i in range(2):
            c = ngf * 4 // 2**i
            layers += [
                nn.ConvTranspose2d(c, c // 2, 3, stride=2, padding=1, output_padding=1, bias=bias),
                ref_norm(norm, c // 2),
                nn.ReLU(True),
            ]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, out_nc, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def forward(self, x):
        return self.model(x)


class RefUnetBlock(nn.Module):
    def __init__(self, outer, inner, in_nc=None, sub=None, outermost=False, innermost=False, norm="batch", dropout=False):
        super().__init__()
        self.outermost = outermost
        bias = norm.startswith("instance")
        in_nc = outer if in_nc is None else in_nc
        down = nn.Conv2d(in_nc, inner, 4, stride=2, padding=1, bias=bias)
        if outermost:
            layers = [down, sub, nn.ReLU(True), nn.ConvTranspose2d(inner * 2, outer, 4, stride=2, padding=1), nn.Tanh()]
        elif innermost:
            up = nn.ConvTranspose2d(inner, outer, 4, stride=2, padding=1, bias=bias)
            layers = [nn.LeakyReLU(0.2, True), down, nn.ReLU(True), up, ref_norm(norm, outer)]
        else:
            up = nn.ConvTranspose2d(inner * 2, outer, 4, stride=2, padding=1, bias=bias)
            layers = [nn.LeakyReLU(0.2, True), down, ref_norm(norm, inner), sub, nn.ReLU(True), up, ref_norm(norm, outer)]
            if dropout:
                layers.append(nn.Dropout(0.5))
        self.model = nn.Sequential(*layers)

    def forward(self, x):
        return self.model(x) if self.outermost else torch.cat([x, self.model(x)], 1)


class RefUnetGenerator(nn.Module):
    def __init__(self, in_nc, out_nc, num_downs, ngf, norm, dropout=False):
        super().__init__()
        block = RefUnetBlock(ngf * 8, ngf * 8, innermost=True, norm=norm)
        for _ in range(num_downs - 5):
            block = RefUnetBlock(ngf * 8, ngf * 8, sub=block, norm=norm, dropout=dropout)
        for outer in (ngf * 4, ngf * 2, ngf):
            block = RefUnetBlock(outer, outer * 2, sub=block, norm=norm)
        self.model = RefUnetBlock(out_nc, ngf, in_nc=in_nc, sub=block, outermost=True, norm=norm)

    def forward(self, x):
        return self.model(x)


def randomise(net: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial weights and running statistics, so that a wrong mapping shows in the output."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in net.state_dict().items():
            if name.endswith("running_var"):
                tensor.copy_(torch.rand(tensor.shape, generator=gen) + 0.5)
            elif tensor.is_floating_point():
                scale = 1.0 if name.endswith("running_mean") else 0.1
                tensor.copy_(torch.randn(tensor.shape, generator=gen) * scale + (1.0 if tensor.ndim == 1 and name.endswith("weight") else 0.0))
    return net.eval()


def check_same_outputs(path: Path, ref: nn.Module, image: torch.Tensor, arch: str | None = None):
    weights, net_cfg, source = read_reference_generator(path, arch=arch)
    ours = build_generator(net_cfg)
    load_weights(ours, weights, source)
    ours.eval()
    with torch.inference_mode():
        expected, got = ref(image), ours(image)
    assert expected.std() > 0.05
    # float rounding only: inference on packed oneDNN weights may take another algorithm (translate/accel)
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
    return net_cfg


# ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("n_blocks", "norm", "dropout"), [(6, "instance", False), (9, "batch", True), (6, "none", False)])
def test_resnet_reference_layout_loads_and_matches(tmp_path, photo, n_blocks, norm, dropout):
    ref = randomise(RefResnetGenerator(3, 1, 4, norm, n_blocks, dropout=dropout))
    path = tmp_path / "latest_net_G_A.pth"
    torch.save(ref.state_dict(), path)

    net_cfg = check_same_outputs(path, ref, photo(64, 48))
    assert (net_cfg.generator, net_cfg.base_channels_g, net_cfg.norm) == (f"resnet_{n_blocks}blocks", 4, norm)
    assert (net_cfg.in_channels, net_cfg.out_channels, net_cfg.dropout) == (3, 1, dropout)


def test_unet_reference_layout_with_batch_norm_and_dropout(tmp_path, photo):
    ref = randomise(RefUnetGenerator(3, 3, 7, 4, "batch", dropout=True))
    path = tmp_path / "latest_net_G.pth"
    torch.save(ref.state_dict(), path)  # with num_batches_tracked, as PyTorch >= 0.4.1 writes

    net_cfg = check_same_outputs(path, ref, photo(128, 128))
    assert (net_cfg.generator, net_cfg.base_channels_g, net_cfg.norm) == ("unet_128", 4, "batch")


def test_variants_in_the_wild_dataparallel_block_and_stale_instance_stats(tmp_path, photo):
    ref = randomise(RefResnetGenerator(3, 3, 4, "instance", 9, attr="block"))
    state = {f"module.{k}": v for k, v in ref.state_dict().items()}
    for name, module in ref.named_modules():
        if isinstance(module, nn.InstanceNorm2d):  # PyTorch < 0.4 saved unused running stats
            state[f"module.{name}.running_mean"] = torch.full((module.num_features,), 5.0)
            state[f"module.{name}.running_var"] = torch.full((module.num_features,), 9.0)
    path = tmp_path / "wild.pth"
    torch.save({"state_dict": state}, path)

    net_cfg = check_same_outputs(path, ref, photo(48, 64))
    assert (net_cfg.generator, net_cfg.norm) == ("resnet_9blocks", "instance")


def test_architecture_mismatches_name_the_file_and_the_problem(tmp_path):
    path = tmp_path / "g.pth"
    torch.save(RefResnetGenerator(3, 3, 4, "instance", 9).state_dict(), path)
    with pytest.raises(UserError, match=r"g\.pth: .*resnet_6blocks.*check --arch"):
        read_reference_generator(path, arch="resnet_6blocks")
    with pytest.raises(UserError, match=r"g\.pth: --arch unet_256 does not match.*resnet"):
        read_reference_generator(path, arch="unet_256")
    with pytest.raises(UserError, match="unknown generator"):
        read_reference_generator(path, arch="resnet_99blocks")

    state = RefResnetGenerator(3, 3, 4, "instance", 6).state_dict()
    state["model.10.conv_block.1.weight"] = torch.zeros(16, 16, 5, 5)
    torch.save(state, path)
    with pytest.raises(UserError, match=r"g\.pth: model\.10\.conv_block\.1\.weight has shape \(16, 16, 5, 5\).*\(16, 16, 3, 3\)"):
        read_reference_generator(path)

    torch.save({"encoder.weight": torch.zeros(3, 3)}, path)
    with pytest.raises(UserError, match="not a reference CycleGAN/pix2pix generator"):
        read_reference_generator(path)
    path.write_bytes(b"not a torch file")
    with pytest.raises(UserError, match="not a readable PyTorch weights file"):
        read_reference_generator(path)


class Payload:
    """Unpickling this calls Path.touch: code run by merely loading the file."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_a_pickle_carrying_code_is_refused_and_not_executed(tmp_path):
    probe = tmp_path / "probe"
    pickle.loads(pickle.dumps(Payload(probe)))
    assert probe.exists()  # the payload is live under plain pickle

    marker = tmp_path / "pwned"
    path = tmp_path / "latest_net_G_A.pth"
    state = RefResnetGenerator(3, 3, 4, "instance", 6).state_dict()
    state["model.1.weight"] = Payload(marker)  # type: ignore[assignment]
    torch.save(state, path)

    with pytest.raises(UserError, match=r"latest_net_G_A\.pth: refused: the file contains code, not just weights"):
        read_reference_generator(path)
    with pytest.raises(UserError, match="refused"):
        Translator.load(path)
    assert not marker.exists()


def test_translator_loads_a_reference_file(tmp_path, photo):
    ref = randomise(RefResnetGenerator(3, 3, 4, "instance", 6))
    path = tmp_path / "latest_net_G_A.pth"
    torch.save(ref.state_dict(), path)
    translator = Translator.load(path)
    image = photo(40, 52)  # not a multiple of 4: padded and cropped back
    out = translator.translate_batch(image)
    assert out.shape == image.shape
    assert "reference resnet_6blocks" in translator.source


def vintagify_weights() -> Path:
    # find_spec locates the package without running its code (it needs modules we do not ship)
    spec = importlib.util.find_spec("vintagify")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("vintagify (a published CycleGAN generator, pip install vintagify) is not installed")
    path = Path(list(spec.submodule_search_locations)[0]) / "resources" / "G_A2B_epoch33.pth"
    if not path.is_file():
        pytest.skip(f"{path} missing from the installed vintagify")
    return path


def test_published_vintagify_generator_loads_and_translates(photo):
    from translate.nets.layers import norm_factory

    path = vintagify_weights()
    try:
        norm_factory("instance_affine")
    except ValueError:
        pytest.skip("translate.nets.layers does not build 'instance_affine' norm layers yet")
    translator = Translator.load(path)  # architecture inferred from the keys
    net_cfg = translator.net_config
    assert (net_cfg.generator, net_cfg.base_channels_g, net_cfg.norm) == ("resnet_9blocks", 64, "instance_affine")

    image = photo(128, 128, "coffee")
    out = translator.translate_batch(image)
    assert out.shape == image.shape
    assert out.min() >= -1 and out.max() <= 1
    assert out.std() > 0.2  # not a constant image
    assert (out - image).abs().mean() > 0.02  # a modern→vintage restyling, not the identity
    assert torch.corrcoef(torch.stack([out.flatten(), image.flatten()]))[0, 1] > 0.5  # still the photo


def test_a_reference_checkpoint_is_a_starting_point_for_training(tmp_path):
    """``translate train --init-from latest_net_G.pth``: a published reference-layout generator
    (CycleGAN's, or CUT's code without anti-aliasing) fine-tuned as CUT, weights carried over."""
    from translate.cli import main
    from translate.data.samples import make_sample_dataset
    from translate.train.checkpoint import load_checkpoint

    data = make_sample_dataset(tmp_path / "data", "unpaired", size=32, count=2)
    ref = randomise(RefResnetGenerator(3, 3, 4, "instance", 6))
    path = tmp_path / "latest_net_G.pth"
    torch.save(ref.state_dict(), path)
    run = tmp_path / "run"
    argv = ["train", "--model", "cut", "--data", str(data), "--out", str(run), "--init-from", str(path)]
    argv += [
        "--steps",
        "1",
        "--crop-size",
        "32",
        "--load-size",
        "32",
        "--set",
        "train.lr=0",
        "--set",
        "net.base_channels_d=4",
        "--set",
        "train.nce_patches=16",
    ]
    assert main(argv) == 0
    loaded = load_checkpoint(run)
    assert loaded.cfg.net.generator == "resnet_6blocks" and loaded.cfg.net.base_channels_g == 4
    expected, _, _ = read_reference_generator(path)
    assert all(torch.equal(v, loaded.weights["gen_ab"][k]) for k, v in expected.items())


def test_a_reference_generator_stays_plain_where_auto_would_start_from_the_identity(tmp_path, graded_data):
    """The toolkit recipe's CycleGAN upsamples by resize and, on graded photos, net.residual=auto
    would make it residual; a reference generator (transposed convolutions, never residual) keeps
    its own layout and output, so the run's generator is plain and its weights are the reference's."""
    from translate.cli import main
    from translate.train.checkpoint import load_checkpoint

    ref = randomise(RefResnetGenerator(3, 3, 4, "instance", 6))
    path = tmp_path / "latest_net_G.pth"
    torch.save(ref.state_dict(), path)
    run = tmp_path / "run"
    argv = ["train", "--data", str(graded_data), "--out", str(run), "--init-from", str(path), "--steps", "1"]
    argv += ["--crop-size", "32", "--load-size", "32", "--set", "train.lr=0", "--set", "net.base_channels_d=4"]
    assert main(argv) == 0
    loaded = load_checkpoint(run)
    assert loaded.cfg.net.residual is False and loaded.cfg.train.recon_huber == 0.0 and loaded.cfg.net.upsample == "transposed"
    expected, _, _ = read_reference_generator(path)
    assert all(torch.equal(v, loaded.weights["gen_ab"][k]) for k, v in expected.items())
