"""Tests for the FID Inception loader and the feature extractors (random weights, no downloads)."""

import pytest
import segmentation_models_pytorch as smp
import torch
import torch.nn as nn
from pytorch_fid import inception as fid_inception

from src.metrics.features import EncoderFeatures, InceptionFeatures, build_fid_inception, extract_features


def _random_fid_inception_state_dict() -> dict:
    # pytorch-fid's fid_inception_v3() without its download: same torchvision base, same patched blocks.
    net = fid_inception._inception_v3(num_classes=1008, aux_logits=False, weights=None)
    net.Mixed_5b = fid_inception.FIDInceptionA(192, pool_features=32)
    net.Mixed_5c = fid_inception.FIDInceptionA(256, pool_features=64)
    net.Mixed_5d = fid_inception.FIDInceptionA(288, pool_features=64)
    net.Mixed_6b = fid_inception.FIDInceptionC(768, channels_7x7=128)
    net.Mixed_6c = fid_inception.FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6d = fid_inception.FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6e = fid_inception.FIDInceptionC(768, channels_7x7=192)
    net.Mixed_7b = fid_inception.FIDInceptionE_1(1280)
    net.Mixed_7c = fid_inception.FIDInceptionE_2(2048)
    return net.state_dict()


@pytest.fixture(scope="module")
def fid_weights(tmp_path_factory):
    state_dict = _random_fid_inception_state_dict()
    path = tmp_path_factory.mktemp("weights") / "my_inception.pth"
    torch.save(state_dict, path)
    return path, state_dict


def test_build_fid_inception_loads_the_given_file_and_restores_hub_dir(fid_weights):
    path, state_dict = fid_weights
    hub_dir_before = torch.hub.get_dir()
    network = build_fid_inception(path)
    assert torch.hub.get_dir() == hub_dir_before
    assert not network.training
    # Weights come from our file, not from a fresh random init.
    assert torch.equal(network.blocks[0][0].conv.weight, state_dict["Conv2d_1a_3x3.conv.weight"])
    assert torch.equal(network.blocks[3][2].branch_pool.conv.weight, state_dict["Mixed_7c.branch_pool.conv.weight"])

    extractor = InceptionFeatures(network)
    assert extractor.name == "inception_fid"
    images = torch.rand(2, 1, 48, 48) * 2 - 1
    features = extractor(images)
    assert features.shape == (2, 2048)
    assert torch.isfinite(features).all()
    # Built from the path directly, the extractor holds the same weights and gives the same features.
    assert torch.allclose(InceptionFeatures(path)(images), features, atol=1e-5)
    assert torch.hub.get_dir() == hub_dir_before


def test_build_fid_inception_missing_file_names_path_and_never_downloads(tmp_path):
    missing = tmp_path / "nowhere" / "pt_inception.pth"
    hub_dir_before = torch.hub.get_dir()
    with pytest.raises(FileNotFoundError, match="pt_inception.pth") as error:
        build_fid_inception(missing)
    assert str(missing) in str(error.value)
    assert torch.hub.get_dir() == hub_dir_before


def test_build_fid_inception_restores_hub_dir_when_loading_fails(tmp_path):
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"not a checkpoint")
    hub_dir_before = torch.hub.get_dir()
    with pytest.raises(Exception):
        build_fid_inception(corrupt)
    assert torch.hub.get_dir() == hub_dir_before


class _RecordingInception(nn.Module):
    """Stands in for pytorch-fid's InceptionV3: records its input, returns [(N, 2048, 1, 1)]."""

    def forward(self, images):
        self.seen = images
        return [images.mean(dim=(1, 2, 3))[:, None, None, None].expand(-1, 2048, 1, 1)]


def test_inception_features_feeds_three_channels_in_unit_range():
    stub = _RecordingInception()
    extractor = InceptionFeatures(stub)
    images = torch.tensor([-1.0, 0.0, 1.0, 3.0]).reshape(1, 1, 2, 2)
    features = extractor(images)
    assert features.shape == (1, 2048)
    assert stub.seen.shape == (1, 3, 2, 2)
    expected = torch.tensor([0.0, 0.5, 1.0, 1.0]).reshape(1, 2, 2)  # [-1, 1] -> [0, 1], out-of-range clamped
    assert torch.equal(stub.seen[0], expected.expand(3, 2, 2))
    with pytest.raises(ValueError, match="1 or 3"):
        extractor(torch.zeros(1, 2, 4, 4))


def test_encoder_features_pools_the_deepest_smp_map_and_stays_frozen():
    torch.manual_seed(0)
    encoder = smp.encoders.get_encoder("resnet18", in_channels=1, depth=5, weights=None)
    extractor = EncoderFeatures(encoder, name="segmenter_encoder")
    extractor.train()  # a parent module switching to train mode must not unfreeze BatchNorm
    assert not encoder.training and all(not p.requires_grad for p in encoder.parameters())
    images = torch.rand(3, 1, 32, 32) * 2 - 1
    features = extractor(images)
    assert features.shape == (3, 512)
    assert extractor.name == "segmenter_encoder"
    assert not features.requires_grad
    assert torch.allclose(features, encoder(images)[-1].mean(dim=(2, 3)))


def test_encoder_features_accepts_a_single_tensor_output():
    conv = nn.Conv2d(1, 5, 3)
    images = torch.randn(2, 1, 10, 10)
    features = EncoderFeatures(conv, name="conv")(images)
    assert torch.allclose(features, conv(images).mean(dim=(2, 3)))


def test_extract_features_batches_like_one_pass():
    conv = nn.Conv2d(1, 4, 3)
    extractor = EncoderFeatures(conv, name="conv")
    images = torch.randn(7, 1, 12, 12)
    features = extract_features(extractor, images, batch_size=3, device="cpu")
    assert features.shape == (7, 4) and features.dtype == torch.float64 and features.device.type == "cpu"
    assert torch.allclose(features, extractor(images).double(), atol=1e-6)
