"""The FID Inception: pytorch-fid's key layout, strict loading from a local file, 2048-d features."""
import pytest
import torch

from agsm.metrics.fid import inception_extractor
from agsm.metrics.inception import FIDInceptionV3, load_fid_inception


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory):
    """A random FID Inception saved as pytorch-fid's file is (torchvision names), without BatchNorm step counters."""
    torch.manual_seed(0)
    state = {k: v for k, v in FIDInceptionV3().state_dict().items() if not k.endswith("num_batches_tracked")}
    path = tmp_path_factory.mktemp("inception") / "pt_inception-2015-12-05-6726825d.pth"
    torch.save(state, path)
    return path


def test_key_layout_is_torchvision_inception_v3_with_1008_classes():
    state = FIDInceptionV3().state_dict()
    assert len(state) == 566  # torchvision's inception_v3(num_classes=1008, aux_logits=False), counters included
    for key in ("Conv2d_1a_3x3.conv.weight", "Conv2d_4a_3x3.bn.running_var", "Mixed_5b.branch5x5_1.conv.weight",
                "Mixed_6a.branch3x3dbl_3.bn.bias", "Mixed_6e.branch7x7dbl_5.conv.weight",
                "Mixed_7a.branch7x7x3_4.bn.weight", "Mixed_7c.branch3x3dbl_3b.bn.running_mean", "fc.bias"):
        assert key in state, key
    assert state["fc.weight"].shape == (1008, 2048)
    assert state["Mixed_6b.branch7x7_2.conv.weight"].shape == (128, 128, 1, 7)
    params = sum(p.numel() for p in FIDInceptionV3().parameters())
    assert params == 23_850_960  # the same count as torchvision's network of that configuration


@pytest.mark.slow
def test_extractor_loads_strictly_and_gives_2048_features(weights_file):
    extractor = inception_extractor(weights_file)
    images = torch.rand(2, 3, 40, 52)
    features = extractor(images)
    assert features.shape == (2, 2048) and features.dtype == torch.float32
    torch.testing.assert_close(extractor(images[1:]), features[1:], rtol=1e-4, atol=1e-5)  # per-image


def test_missing_or_wrong_files_are_refused_by_name(weights_file, tmp_path):
    with pytest.raises(FileNotFoundError, match="pt_inception-2015-12-05-6726825d.pth from pytorch-fid"):
        load_fid_inception(tmp_path / "nothing.pth")
    state = torch.load(weights_file)
    del state["Mixed_6c.branch_pool.bn.running_var"]
    state["AuxLogits.fc.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match=r"missing 1: Mixed_6c.branch_pool.bn.running_var\n\s*unexpected 1: AuxLogits"):
        load_fid_inception(tmp_path / "bad.pth")


@pytest.mark.slow
def test_same_features_as_pytorch_fid_when_it_is_installed(weights_file, monkeypatch):
    """Cross-check against pytorch-fid's own network (skipped where pytorch-fid is not installed, as in CI)."""
    inception = pytest.importorskip("pytorch_fid.inception")
    state = torch.load(weights_file)
    for key, value in list(state.items()):  # BatchNorm statistics that matter
        if key.endswith("running_var"):
            state[key] = torch.rand_like(value) + 0.5
        elif key.endswith("running_mean"):
            state[key] = torch.randn_like(value) * 0.1
    monkeypatch.setattr(inception, "load_state_dict_from_url", lambda *args, **kwargs: state)
    reference = inception.InceptionV3([3], resize_input=True, normalize_input=True, use_fid_inception=True).eval()
    ours = FIDInceptionV3()
    ours.load_state_dict(state, strict=False)
    images = torch.rand(2, 3, 64, 80)
    with torch.no_grad():
        torch.testing.assert_close(ours.eval()(images), reference(images)[0].flatten(1), rtol=1e-5, atol=1e-6)
