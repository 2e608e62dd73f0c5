"""Tests of paired training's parts (DeepDenoiseLib.denoise.pair_training, discriminator, the dae UNet, the
paired settings of DenoiseConfig): settings refused where they do not apply, the autoencoder has no
skip connection, input and target patches stay aligned through augmentation, the discriminator
learns, and training is seeded, budgeted, reported and cancellable like Noise2Void's."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from DeepDenoiseLib.core.progress import Cancelled, CancelToken, ProgressEvent
from DeepDenoiseLib.core.volume import Volume
from DeepDenoiseLib.denoise.config import DenoiseConfig
from DeepDenoiseLib.denoise.n2v_training import train_noise2void
from DeepDenoiseLib.denoise.networks import build_network
from DeepDenoiseLib.denoise.pair_training import PairSampler, reconstruction_loss, train_pairs
from DeepDenoiseLib.denoise.patches import PatchGeometry, PatchSampler
from DeepDenoiseLib.denoise.pipeline import denoise_volume
from DeepDenoiseLib.nets.discriminator import AdversarialLoss, PatchDiscriminator, discriminator_layers
from DeepDenoiseLib.nets.unet import UNet
from Testing.support.phantoms import noisy_phantom, single_thread, tiny_config  # noqa: F401

SHAPE = (8, 32, 32)


@pytest.fixture(scope="module")
def pair() -> tuple[np.ndarray, np.ndarray]:
    clean, noisy = noisy_phantom(SHAPE, sigma=0.1, seed=5)
    return noisy, clean


# --- configuration ----------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["noise2noise", "supervised"])
def test_paired_methods_have_defaults_and_round_trip_through_json(method: str) -> None:
    config = DenoiseConfig.for_method(method, model={"architecture": "dae"}, training={"loss": "l1"})
    assert config.method == method and config.model.architecture == "dae" and config.training.loss == "l1"
    assert DenoiseConfig.from_json(config.to_json()) == config
    assert DenoiseConfig.for_method(method).training.adversarial_weight == 0.0


@pytest.mark.parametrize(
    "method, sections, message",
    [
        ("n2v", {"model": {"architecture": "dae"}}, "noise2noise or supervised"),
        ("blindspot", {"training": {"loss": "l1"}}, "training.loss"),
        ("noise2noise", {"training": {"adversarial_weight": 0.1}}, "supervised only"),
        ("n2v", {"training": {"adversarial_weight": 0.1}}, "supervised only"),
        ("supervised", {"masking": {"masked_fraction": 0.05}}, "masks nothing"),
        ("noise2noise", {"masking": {"struct_axis": "x"}}, "masks nothing"),
        ("supervised", {"model": {"architecture": "vae"}}, "model.architecture"),
        ("supervised", {"training": {"loss": "huber"}}, "training.loss"),
        ("supervised", {"training": {"adversarial_weight": -1.0}}, "adversarial_weight"),
        ("noise2noise", {"prediction": {"noise2noise_input": "both"}}, "noise2noise_input"),
    ],
)
def test_settings_that_do_not_apply_are_refused(method: str, sections: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DenoiseConfig.for_method(method, **sections)


def test_the_noise2void_entry_points_refuse_paired_methods(pair) -> None:
    noisy, _ = pair
    with pytest.raises(ValueError, match="pairs"):
        train_noise2void(noisy, tiny_config("noise2noise"))
    with pytest.raises(ValueError, match="pairs of volumes"):
        denoise_volume(Volume(noisy), tiny_config("supervised"))
    with pytest.raises(ValueError, match="paired methods"):
        train_pairs([noisy], [noisy], tiny_config("n2v"))


# --- networks -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_the_autoencoder_is_the_unet_without_skip_connections(spatial_dims: int) -> None:
    torch.manual_seed(0)
    unet = UNet(spatial_dims, 3, 1, depth=2, base_channels=4)
    autoencoder = UNet(spatial_dims, 3, 1, depth=2, base_channels=4, skips=False)
    # decoders see only the upsampled features: 16 then 8 channels instead of 16+8 and 8+4
    assert [d.layers[0].in_channels for d in unet.decoders] == [24, 12]
    assert [d.layers[0].in_channels for d in autoencoder.decoders] == [16, 8]
    shape = (2, 3) + (8,) * spatial_dims
    assert autoencoder(torch.randn(shape)).shape == (2, 1) + shape[2:]
    # a change confined to one voxel reaches the output only through the bottleneck
    autoencoder.eval()
    image = torch.zeros(shape)
    bumped = image.clone()
    bumped[(0, 0) + (3,) * spatial_dims] = 1.0
    with torch.no_grad():
        difference = (autoencoder(bumped) - autoencoder(image))[0, 0].abs()
    assert difference.max() > 0
    # the pooled bottleneck spreads it over the whole 4x4(x4) block: no voxel-exact path remains
    assert (difference > 0).sum() >= 4**spatial_dims


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_a_residual_unet_starts_as_the_identity_on_its_first_channel(spatial_dims: int) -> None:
    torch.manual_seed(0)
    network = UNet(spatial_dims, 3, 1, depth=2, base_channels=4, residual=True)
    image = torch.randn((2, 3) + (8,) * spatial_dims)
    assert torch.equal(network(image), image[:, :1])
    loss = ((network(image) - 0.5 * image[:, :1]) ** 2).mean()
    loss.backward()
    assert network.head.weight.grad.abs().sum() > 0  # and it learns from there


def test_build_network_makes_the_architecture_the_config_names() -> None:
    spacing = (1.0, 1.0, 1.0)
    unet, _ = build_network(tiny_config("supervised"), SHAPE, spacing)
    autoencoder, geometry = build_network(tiny_config("supervised", model={"architecture": "dae"}), SHAPE, spacing)
    assert isinstance(autoencoder, UNet) and unet.skips and not autoencoder.skips
    assert unet.residual and not autoencoder.residual  # a residual path would be a skip
    assert not build_network(tiny_config("n2v"), SHAPE, spacing)[0].residual  # masking needs the plain UNet
    assert geometry.channels == 3  # the slice and one neighbour each side, as for Noise2Void
    volumetric, geometry = build_network(tiny_config("noise2noise", model={"dimensions": "3d", "architecture": "dae"}), SHAPE, spacing)
    assert volumetric.spatial_dims == 3 and not volumetric.skips and geometry.channels == 1


@pytest.mark.parametrize("spatial_dims, patch", [(2, (32, 32)), (3, (8, 16, 16)), (2, (8, 8))])
def test_patch_discriminator_scores_patches(spatial_dims: int, patch: tuple) -> None:
    layers = discriminator_layers(patch)
    discriminator = PatchDiscriminator(spatial_dims, 1, 8, layers)
    scores = discriminator(torch.randn((2, 1) + patch))
    assert scores.shape[:2] == (2, 1) and scores.ndim == 2 + spatial_dims
    assert all(s >= 1 for s in scores.shape[2:])
    assert layers == min(3, int(np.log2(min(patch))) - 1)


def test_the_discriminator_learns_to_tell_smooth_from_noisy_patches() -> None:
    torch.manual_seed(0)
    adversarial = AdversarialLoss(2, (16, 16), 0.1, torch.device("cpu"), base_channels=8)
    smooth = torch.linspace(0, 1, 16).repeat(8, 1, 16, 1)
    noisy = smooth + 0.3 * torch.randn(smooth.shape)
    losses = [adversarial.discriminator_step(smooth, noisy, 2e-3) for _ in range(30)]
    assert losses[-1] < 0.5 * losses[0]
    with torch.no_grad():
        assert adversarial.discriminator(smooth).mean() > adversarial.discriminator(noisy).mean() + 0.3


def test_adaptive_weight_sets_the_adversarial_gradient_to_a_fraction_of_the_reconstruction_gradient() -> None:
    torch.manual_seed(0)
    head = torch.nn.Conv2d(2, 1, 1)
    features = torch.randn(4, 2, 16, 16)
    target = torch.randn(4, 1, 16, 16)
    adversarial = AdversarialLoss(2, (16, 16), 0.25, torch.device("cpu"), base_channels=8)
    output = head(features)
    reconstruction = reconstruction_loss(output, target, "l2")
    term = adversarial.generator_term(output, reconstruction, head.weight)
    gradient_reconstruction = torch.autograd.grad(reconstruction, head.weight, retain_graph=True)[0]
    gradient_adversarial = torch.autograd.grad(term, head.weight)[0]
    assert float(gradient_adversarial.norm() / gradient_reconstruction.norm()) == pytest.approx(0.25, rel=1e-4)
    assert adversarial.last_scale > 0
    assert all(p.requires_grad for p in adversarial.discriminator.parameters())  # unfrozen again


def test_l2_scores_squared_errors_and_l1_absolute_ones() -> None:
    output, target = torch.tensor([0.0, 1.0, 3.0]), torch.zeros(3)
    assert float(reconstruction_loss(output, target, "l2")) == pytest.approx(10.0 / 3.0)
    assert float(reconstruction_loss(output, target, "l1")) == pytest.approx(4.0 / 3.0)


# --- patches --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("spatial, context, slice_axes", [((16, 16), 1, (0,)), ((16, 16), 2, (0, 1, 2)), ((8, 16, 16), 0, (0,))])
def test_target_patches_follow_their_input_through_crops_flips_and_rotations(spatial, context, slice_axes) -> None:
    volume = np.random.default_rng(0).random((16, 24, 20)).astype(np.float32)
    geometry = PatchGeometry(spatial=spatial, context_slices=context)
    sampler = PatchSampler(volume, geometry, 0.0, np.random.default_rng(1), slice_axes, target=volume * 2.0 + 1.0)
    batch = sampler.training_batch(12)
    assert batch.shape == (12, geometry.channels + 1, *spatial) and sampler.channels == geometry.channels + 1
    np.testing.assert_allclose(batch[:, -1], batch[:, 0] * 2.0 + 1.0, rtol=1e-6)
    with pytest.raises(ValueError, match="target"):
        PatchSampler(volume, geometry, 0.0, np.random.default_rng(1), target=volume[:-1])


def test_pair_sampler_draws_from_every_pair_and_holds_validation_patches_out() -> None:
    rng = np.random.default_rng(0)
    geometry = PatchGeometry(spatial=(8, 8), context_slices=0)
    volumes = [np.full((4, 40, 16), float(index), dtype=np.float32) for index in range(3)]
    sampler = PairSampler([PatchSampler(v, geometry, 0.25, rng, target=v + 10.0) for v in volumes], rng)
    batch = sampler.training_batch(60)
    sources = set(np.unique(batch[:, 0]).tolist())
    assert sources == {0.0, 1.0, 2.0}
    np.testing.assert_array_equal(batch[:, 1], batch[:, 0] + 10.0)
    assert sampler.validation_batch(5).shape == (5, 2, 8, 8)


# --- training ---------------------------------------------------------------------------------------------


def weights(model) -> dict:
    return {k: v.detach().clone() for k, v in model.network.state_dict().items()}


@pytest.mark.parametrize("sections", [{}, {"model": {"architecture": "dae"}, "training": {"adversarial_weight": 0.1, "loss": "l1"}}])
def test_same_seed_gives_identical_weights(pair, sections: dict) -> None:
    noisy, clean = pair

    def run(seed: int):
        config = tiny_config(
            "supervised", model=sections.get("model", {}), training=dict(sections.get("training", {}), seed=seed, steps_per_epoch=3)
        )
        return train_pairs([noisy], [clean], config)

    first, second, other = weights(run(0)), weights(run(0)), weights(run(1))
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert not all(torch.equal(first[k], other[k]) for k in first)


def test_noise2noise_training_reports_progress_and_keeps_the_best_weights(pair) -> None:
    noisy, clean = pair
    second = noisy_phantom(SHAPE, sigma=0.1, seed=5)[0] + 0.1 * np.random.default_rng(9).standard_normal(SHAPE).astype(np.float32)
    events: list[ProgressEvent] = []
    config = tiny_config("noise2noise", training={"steps_per_epoch": 10, "max_epochs": 3, "validation_fraction": 0.5})
    model = train_pairs([noisy, second], [second, noisy], config, progress=events.append)
    assert model.history.steps == 30 and model.history.stopped_by == "epochs"
    assert len(model.history.validation_loss) == 3
    assert model.history.best_validation_loss == min(model.history.validation_loss)
    assert not model.network.training and model.noise_variance is None
    fractions = [e.fraction for e in events]
    assert events[0].message == "starting" and fractions[-1] == 1.0 and fractions == sorted(fractions)
    assert [e.message for e in events[1:-1]] == ["step 10", "step 20", "step 30"]


def test_cancelling_stops_paired_training(pair) -> None:
    noisy, clean = pair
    token = CancelToken()

    def progress(event: ProgressEvent) -> None:
        if event.message == "step 10":
            token.cancel()

    with pytest.raises(Cancelled):
        train_pairs([noisy], [clean], tiny_config("supervised", training={"steps_per_epoch": 1000}), progress=progress, cancel=token)


def test_time_budget_stops_paired_training(pair) -> None:
    noisy, clean = pair
    config = tiny_config("supervised", training={"budget_seconds": 1.0, "steps_per_epoch": 100000, "max_epochs": 1, "min_steps": 0})
    model = train_pairs([noisy], [clean], config)
    assert model.history.stopped_by == "budget" and 1.0 <= model.history.seconds < 4.0


def test_pairs_of_other_shapes_share_one_patch_and_mismatched_pairs_are_refused(pair) -> None:
    noisy, clean = pair
    small = noisy[:, :16, :24]
    model = train_pairs([noisy, small], [clean, clean[:, :16, :24]], tiny_config("supervised"))
    assert model.geometry.spatial == (16, 16)
    with pytest.raises(ValueError, match="one shape"):
        train_pairs([noisy], [clean[:, :16]], tiny_config("supervised"))
    with pytest.raises(ValueError, match="as many targets"):
        train_pairs([noisy, noisy], [clean], tiny_config("supervised"))
