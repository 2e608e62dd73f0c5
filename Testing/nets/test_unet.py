"""Tests of the UNet (DeepDenoiseLib.nets.unet): 2D/3D by parameter, configurable depth, width and
normalisation, the N2V2 variant (blur-pool downsampling, no top-level skip) and anisotropy-aware
pooling along the slice axis."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from DeepDenoiseLib.denoise.config import DenoiseConfig
from DeepDenoiseLib.denoise.networks import build_network
from DeepDenoiseLib.nets.unet import ConvBlock, Downsample, UNet, plan_pool_z, required_multiple
from Testing.support.phantoms import single_thread  # noqa: F401

NORM_TYPES = {
    ("batch", 2): nn.BatchNorm2d,
    ("batch", 3): nn.BatchNorm3d,
    ("instance", 2): nn.InstanceNorm2d,
    ("instance", 3): nn.InstanceNorm3d,
    ("group", 2): nn.GroupNorm,
    ("group", 3): nn.GroupNorm,
}


def first_conv(block: ConvBlock) -> nn.Module:
    return block.layers[0]


@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize("depth", [1, 2])
@pytest.mark.parametrize("norm", ["batch", "instance", "group", "none"])
def test_forward_keeps_spatial_shape_and_sets_channels(spatial_dims: int, depth: int, norm: str) -> None:
    torch.manual_seed(0)
    net = UNet(spatial_dims, in_channels=3, out_channels=2, depth=depth, base_channels=4, norm=norm).eval()
    shape = (2, 3) + (8,) * (spatial_dims - 2) + (8, 12)
    out = net(torch.randn(shape))
    assert out.shape == (2, 2) + shape[2:]
    assert torch.isfinite(out).all()
    conv = nn.Conv3d if spatial_dims == 3 else nn.Conv2d
    convs = [m for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Conv3d))]
    assert convs and all(isinstance(m, conv) for m in convs)
    norms = [
        m for m in net.modules() if isinstance(m, (nn.BatchNorm2d, nn.BatchNorm3d, nn.InstanceNorm2d, nn.InstanceNorm3d, nn.GroupNorm))
    ]
    if norm == "none":
        assert norms == []
    else:
        # two normalisations per conv block: encoders, bottleneck, decoders
        assert len(norms) == 2 * (2 * depth + 1)
        assert all(type(m) is NORM_TYPES[(norm, spatial_dims)] for m in norms)


@pytest.mark.parametrize("depth, base", [(1, 4), (2, 8), (3, 4)])
def test_depth_and_width_set_the_channel_ladder(depth: int, base: int) -> None:
    net = UNet(2, 1, 1, depth=depth, base_channels=base, norm="none")
    assert len(net.encoders) == len(net.downsamples) == len(net.decoders) == depth
    assert [first_conv(e).out_channels for e in net.encoders] == [base * 2**level for level in range(depth)]
    assert first_conv(net.bottleneck).out_channels == base * 2**depth
    assert net.head.in_channels == base and net.head.out_channels == 1


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="spatial_dims"):
        UNet(spatial_dims=4)
    with pytest.raises(ValueError, match="pool_z"):
        UNet(3, depth=2, pool_z=[True])


# --- N2V2 variant ----------------------------------------------------------------------------------


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_without_top_skip_the_top_decoder_gets_no_skip_channels(spatial_dims: int) -> None:
    base, depth = 4, 2
    with_skip = UNet(spatial_dims, 1, 1, depth, base, "none", top_skip=True)
    without = UNet(spatial_dims, 1, 1, depth, base, "none", top_skip=False)
    # decoders run from the deepest level up; the last one is the full-resolution level
    assert first_conv(with_skip.decoders[-1]).in_channels == 2 * base + base
    assert first_conv(without.decoders[-1]).in_channels == 2 * base
    # the deeper levels keep their skips
    assert first_conv(without.decoders[0]).in_channels == 4 * base + 2 * base
    size = (8,) * spatial_dims
    assert without(torch.randn(1, 1, *size)).shape == (1, 1, *size)


def test_without_top_skip_the_output_does_not_see_full_resolution_encoder_features() -> None:
    """With the top skip, zeroing the input at one voxel changes the output there through the
    full-resolution path alone even if the deeper path is cut; without it, the deeper path is the
    only route, so cutting it leaves the output independent of the input."""
    torch.manual_seed(0)
    for top_skip, expect_dependence in ((True, True), (False, False)):
        net = UNet(2, 1, 1, depth=1, base_channels=4, norm="none", top_skip=top_skip)
        with torch.no_grad():
            for p in net.bottleneck.parameters():
                p.zero_()  # cut the deeper path: the bottleneck now outputs a constant
        x = torch.randn(1, 1, 8, 8, requires_grad=True)
        net(x).sum().backward()
        assert bool(x.grad.abs().sum() > 0) is expect_dependence


def block_checkerboard(n: int) -> torch.Tensor:
    """A checkerboard of 2x2 blocks: after halving, it is the finest pattern the coarser grid holds."""
    y, x = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
    return ((y // 2 + x // 2) % 2).float()[None, None]


def test_blurpool_is_anti_aliased_compared_with_max_pool() -> None:
    image = block_checkerboard(32)
    max_pool = Downsample(2, 1, (2, 2), blurpool=False)
    blur_pool = Downsample(2, 1, (2, 2), blurpool=True)
    inner = (slice(None), slice(None), slice(2, -2), slice(2, -2))  # away from the padded border
    max_out, blur_out = max_pool(image), blur_pool(image)
    assert max_out.shape == blur_out.shape == (1, 1, 16, 16)
    # max-pool passes the checkerboard through at full amplitude; blur-pool attenuates it
    max_amplitude = float(max_out[inner].max() - max_out[inner].min())
    blur_amplitude = float(blur_out[inner].max() - blur_out[inner].min())
    assert max_amplitude == pytest.approx(1.0)
    assert blur_amplitude <= 0.6 * max_amplitude
    # and a one-voxel shift of the input changes the blur-pooled output less
    shifted = torch.roll(image, 1, dims=3)
    max_shift = float((max_pool(shifted) - max_out)[inner].abs().mean())
    blur_shift = float((blur_pool(shifted) - blur_out)[inner].abs().mean())
    assert blur_shift <= 0.6 * max_shift


@pytest.mark.parametrize(
    "spatial_dims, factors, kernel_shape",
    [(2, (2, 2), (3, 3)), (3, (2, 2, 2), (3, 3, 3)), (3, (1, 2, 2), (1, 3, 3))],
)
def test_blurpool_kernel_is_a_normalised_binomial_blur(spatial_dims: int, factors: tuple, kernel_shape: tuple) -> None:
    channels = 3
    down = Downsample(spatial_dims, channels, factors, blurpool=True)
    kernel = down.kernel
    assert kernel.shape == (channels, 1, *kernel_shape)
    assert torch.allclose(kernel.sum(dim=tuple(range(1, kernel.ndim))), torch.ones(channels))
    taps = torch.tensor([0.25, 0.5, 0.25])
    expected = taps[:, None] * taps[None, :]
    if spatial_dims == 3:
        expected = (taps if factors[0] == 2 else torch.ones(1))[:, None, None] * expected[None]
    assert torch.allclose(kernel[0, 0], expected)
    # a constant image stays that constant: the blur passes DC exactly
    size = (4, 8, 8) if spatial_dims == 3 else (8, 8)
    out = down(torch.full((1, channels, *size), 0.7))
    assert torch.allclose(out, torch.full_like(out, 0.7))
    assert out.shape[2:] == tuple(s // f for s, f in zip(size, factors))


def test_n2v2_config_builds_blurpool_downsampling_without_top_skip() -> None:
    config = DenoiseConfig.for_method("n2v2", model={"depth": 2, "base_channels": 4}, training={"patch_size": 16})
    net, geometry = build_network(config, (8, 32, 32), (1.0, 1.0, 1.0))
    assert isinstance(net, UNet)
    assert net.top_skip is False
    assert all(d.blurpool for d in net.downsamples)
    assert first_conv(net.decoders[-1]).in_channels == 2 * 4
    plain, _ = build_network(DenoiseConfig.for_method("n2v", model={"depth": 2, "base_channels": 4}), (8, 32, 32), (1.0, 1.0, 1.0))
    assert plain.top_skip is True and not any(d.blurpool for d in plain.downsamples)


# --- anisotropy ------------------------------------------------------------------------------------

THICK_SLICES_ZYX = (5.0, 0.9, 0.9)  # a 256x256x24 scan with 5 mm slices and 0.9 mm pixels


@pytest.mark.parametrize("depth", [1, 2, 3, 4, 5])
def test_thick_slices_pool_in_plane_until_voxels_are_about_isotropic(depth: int) -> None:
    plan = plan_pool_z(THICK_SLICES_ZYX, depth, 24)
    # in-plane spacing after n levels: 0.9 * 2**n; Z pools only once 5 mm <= 1.5 * that (n >= 2)
    assert plan == [False, False, True, True, True][:depth]
    # never below one slice: the pooled depth stays a whole number of slices >= 1
    remaining = 24
    for pool in plan:
        if pool:
            assert remaining % 2 == 0 and remaining >= 2
            remaining //= 2
    assert remaining >= 1


def test_thick_slice_plan_matches_hand_computation() -> None:
    # level 0: 5 > 1.5*0.9; level 1: 5 > 1.5*1.8; level 2: 5 <= 1.5*3.6 -> pool (z 10 mm, 12 slices);
    # level 3: 10 <= 1.5*7.2 -> pool (6 slices); level 4: 20 <= 1.5*14.4 -> pool (3 slices)
    assert plan_pool_z(THICK_SLICES_ZYX, 5, 24) == [False, False, True, True, True]
    # with 12 slices the last level would leave 1.5 slices: it stays unpooled
    assert plan_pool_z(THICK_SLICES_ZYX, 5, 12) == [False, False, True, True, False]


@pytest.mark.parametrize(
    "patch_depth, expected",
    [(1, [False, False, False]), (2, [True, False, False]), (3, [False, False, False]), (6, [True, False, False]), (8, [True, True, True])],
)
def test_z_is_never_pooled_below_one_slice(patch_depth: int, expected: list) -> None:
    assert plan_pool_z((1.0, 1.0, 1.0), 3, patch_depth) == expected


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_isotropic_volume_pools_z_at_every_level(depth: int) -> None:
    assert plan_pool_z((1.0, 1.0, 1.0), depth, 32) == [True] * depth
    assert required_multiple(3, depth, [True] * depth) == (2**depth,) * 3
    net = UNet(3, 1, 1, depth=depth, base_channels=4, norm="none", pool_z=[True] * depth)
    assert all(f == (2, 2, 2) for f in net.level_factors)


def test_thick_slice_volume_builds_a_network_that_keeps_z_and_runs_on_its_patch() -> None:
    """A 256x256x24 volume (array 24x256x256) with 5 mm slices: the 3D network keeps the 24 slices
    unpooled at depth 2, and a forward pass on a patch of that geometry keeps the shape."""
    config = DenoiseConfig.for_method(
        "n2v", model={"dimensions": "3d", "depth": 2, "base_channels": 4, "norm": "none"}, training={"patch_size": 32}
    )
    net, geometry = build_network(config, (24, 256, 256), THICK_SLICES_ZYX)
    assert isinstance(net, UNet) and net.spatial_dims == 3
    assert geometry.spatial == (24, 32, 32)
    assert net.level_factors == [(1, 2, 2), (1, 2, 2)]
    assert required_multiple(3, 2, [False, False]) == (1, 4, 4)
    with torch.no_grad():
        out = net(torch.randn(1, 1, *geometry.spatial))
    assert out.shape == (1, 1, 24, 32, 32)
    # an odd number of slices works too when Z is not pooled
    with torch.no_grad():
        assert net(torch.randn(1, 1, 5, 16, 16)).shape == (1, 1, 5, 16, 16)


def test_isotropic_volume_builds_a_network_pooling_z() -> None:
    config = DenoiseConfig.for_method("n2v", model={"dimensions": "3d", "depth": 2, "base_channels": 4}, training={"patch_size": 16})
    net, geometry = build_network(config, (24, 40, 40), (1.0, 1.0, 1.0))
    assert geometry.spatial == (16, 16, 16)
    assert net.level_factors == [(2, 2, 2), (2, 2, 2)]
