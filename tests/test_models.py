"""Model tests, parametrized over the MODELS registry: a newly registered architecture is covered too."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn
from torchvision.models import resnet34

from seg.config import ConfigError, make_config
from seg.models import MODELS, build_model
from seg.models.blocks import ACTIVATIONS, make_activation
from seg.models.fcn_dilated import dilated_fcn_sizes
from seg.models.resnet_fcn import PretrainedWeightsError, hub_weights_path
from seg.models.unet import valid_unet_out, valid_unet_padding

SIZE = 64  # px; every model must handle it
WIDTH = 0.25  # channel multiplier that keeps CPU tests fast


def make(arch: str, **kw) -> nn.Module:
    torch.manual_seed(0)
    return build_model(make_config(dict(arch=arch, width=WIDTH, **kw)))


def forward_backward(model: nn.Module, size: int = SIZE, batch: int = 2) -> torch.Tensor:
    x = torch.randn(batch, 3, size, size)
    y = model(x)
    y.square().mean().backward()
    return y


@pytest.mark.parametrize("activation", ["relu", "tanh"])
@pytest.mark.parametrize("arch", sorted(MODELS))
def test_shape_and_backward(arch, activation):
    model = make(arch, activation=activation)
    y = forward_backward(model)
    assert y.shape == (2, 21, SIZE, SIZE)
    assert torch.isfinite(y).all()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, f"{arch}: parameters without gradient: {missing[:5]}"


@pytest.mark.parametrize("arch", sorted(MODELS))
def test_skips_start_as_the_skipless_model(arch):
    """skips=True only adds zero-initialised laterals: given the skip-less weights, it computes the same."""
    plain, skip = make(arch).eval(), make(arch, skips=True).eval()
    result = skip.load_state_dict(plain.state_dict(), strict=False)
    assert not result.unexpected_keys
    assert all("lateral" in k for k in result.missing_keys)
    x = torch.randn(1, 3, SIZE, SIZE)
    with torch.no_grad():
        torch.testing.assert_close(skip(x), plain(x))
    assert forward_backward(skip.train()).shape == (2, 21, SIZE, SIZE)


def test_fcn_skips_add_laterals():
    assert sum("lateral" in n for n, _ in make("fcn", skips=True).named_parameters()) == 4  # 2 convs: w + b
    assert sum("lateral" in n for n, _ in make("resnet34_fcn", skips=True).named_parameters()) == 6


def test_other_activations_build():
    for act in ACTIVATIONS:
        assert make("fcn", activation=act)(torch.randn(2, 3, 32, 32)).shape == (2, 21, 32, 32)


def test_unet_valid_padding_gives_input_size():
    assert valid_unet_padding(224) == 94 and valid_unet_out(224 + 2 * 94) == 228  # 2 px cropped per side
    assert valid_unet_out(572) == 388  # Ronneberger et al.'s Fig. 1
    y = forward_backward(make("unet", padding="valid"), size=SIZE)
    assert y.shape == (2, 21, SIZE, SIZE)


def test_unet_valid_convs_are_unpadded():
    model = make("unet", padding="valid")
    assert all(m.padding == (0, 0) for m in model.modules() if isinstance(m, nn.Conv2d))


def test_fcn_dilated_table1_arithmetic():
    # Table 1 as written maps 224 back to 224 with no resize: 224 -> 111 -> 53 -> 24 -> 53 -> 111 -> 224
    assert dilated_fcn_sizes(224) == [224, 224, 224, 111, 53, 24, 53, 111, 224, 224, 224, 224]
    assert all(dilated_fcn_sizes(n)[-1] == n for n in range(40, 513, 8))
    model = make("fcn_dilated", activation="tanh").eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 224, 224)).shape == (1, 21, 224, 224)
        assert model(torch.randn(1, 3, 60, 60)).shape == (1, 21, 60, 60)  # not a multiple of 8: resized


def test_unknown_arch_lists_valid_names():
    with pytest.raises(ConfigError, match="fcn_dilated"):
        make_config(dict(arch="fcn8s"))
    cfg = make_config(dict(arch="fcn")).model_copy(update={"arch": "nope"})  # bypasses validation
    with pytest.raises(KeyError, match="resnet34_fcn"):
        build_model(cfg)


def test_unknown_activation_lists_valid_names():
    with pytest.raises(KeyError, match="leaky_relu"):
        make_activation("swish")
    with pytest.raises(ConfigError, match="activation"):
        make_config(dict(activation="swish"))


@pytest.mark.parametrize("arch", ["fcn", "fcn_dilated", "unet"])
def test_xavier_init(arch):
    model = make(arch)
    for kind in (nn.Conv2d, nn.ConvTranspose2d):
        layers = [m for m in model.modules() if type(m) is kind and m.weight.numel() > 10_000]
        if not layers:
            continue
        w = layers[0].weight
        fan_in, fan_out = nn.init._calculate_fan_in_and_fan_out(w)
        expected = math.sqrt(2.0 / (fan_in + fan_out))  # Glorot: Var = 2 / (fan_in + fan_out)
        assert w.std().item() == pytest.approx(expected, rel=0.05)
        assert w.abs().max().item() <= expected * math.sqrt(3) + 1e-6  # uniform on [-a, a], a = sqrt(3) std
        assert not layers[0].bias.any()


def test_resnet_decoder_is_xavier_and_trunk_is_default():
    model = make("resnet34_fcn")
    assert model.pretrained_loaded is False
    w = model.decoder.stages[0][0].weight  # (512, 128, 3, 3) at width 0.25
    fan_in, fan_out = nn.init._calculate_fan_in_and_fan_out(w)
    assert w.std().item() == pytest.approx(math.sqrt(2.0 / (fan_in + fan_out)), rel=0.05)
    assert model.encoder.stem[0].bias is None  # torchvision's conv1, untouched


def test_resnet_pretrained_path_loads_weights(tmp_path):
    torch.manual_seed(1)
    reference = resnet34(weights=None)
    path = tmp_path / "resnet34.pth"
    torch.save(reference.state_dict(), path)
    model = make("resnet34_fcn", pretrained=True, pretrained_path=str(path))
    assert model.pretrained_loaded is True
    torch.testing.assert_close(model.encoder.stem[0].weight, reference.conv1.weight, rtol=0, atol=0)
    last_bn, ref_bn = model.encoder.layers[3][2].bn2, reference.layer4[2].bn2
    torch.testing.assert_close(last_bn.running_var, ref_bn.running_var)


def test_resnet_missing_weights_raise(tmp_path, monkeypatch):
    missing = tmp_path / "nowhere" / "resnet34.pth"
    with pytest.raises(PretrainedWeightsError, match=str(missing)):
        make("resnet34_fcn", pretrained=True, pretrained_path=str(missing))
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))  # an empty hub cache, no network
    with pytest.raises(PretrainedWeightsError, match="pretrained_path") as err:
        make("resnet34_fcn", pretrained=True)
    assert str(hub_weights_path()) in str(err.value)
    bad = tmp_path / "bad.pth"
    torch.save({"conv1.weight": torch.zeros(1)}, bad)
    with pytest.raises(PretrainedWeightsError, match="not a torchvision resnet34"):
        make("resnet34_fcn", pretrained=True, pretrained_path=str(bad))


@pytest.mark.parametrize("arch", sorted(MODELS))
def test_the_smallest_size_the_spec_allows_works_and_smaller_is_refused(arch):
    from seg.models.spec import ARCHS

    spec = ARCHS[arch]
    smallest = -(-spec.min_size // spec.stride) * spec.stride  # the first multiple of the stride >= min_size
    model = build_model(make_config(dict(arch=arch, image_size=smallest, width=0.25))).eval()
    with torch.no_grad():
        assert model(torch.zeros(1, 3, smallest, smallest)).shape[-2:] == (smallest, smallest)
    if smallest - spec.stride >= 16:
        with pytest.raises(ConfigError, match="image_size"):
            make_config(dict(arch=arch, image_size=smallest - spec.stride))
