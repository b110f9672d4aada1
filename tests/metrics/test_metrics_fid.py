"""FID: statistics equal numpy's mean/cov of the features, the distance matches closed forms, folders and .npz
references agree, self-distance is ~0 and a perturbed copy is far. A small extractor stands in for Inception."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from agsm.metrics.fid import FeatureStats, compute_fid, compute_stats, fid_from_stats
from agsm.metrics.images import to_unit_tensor


class SmallExtractor:
    """images [B, 3, H, W] in 0..1 -> 8 features: 4x4 average pool, a fixed random projection, tanh."""

    def __init__(self, dim=8):
        self.weight = torch.randn(48, dim, generator=torch.Generator().manual_seed(0))

    def __call__(self, images):
        pooled = F.adaptive_avg_pool2d(images, 4).flatten(1)  # [B, 48]
        return torch.tanh(pooled @ self.weight)


def write_folder(folder, n=24, seed=0, shift=0):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        pixels = np.clip(rng.integers(0, 200, (16, 16, 3)) + shift, 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"{i:03d}.png")
    (folder / "notes.txt").write_text("not an image")
    return folder


@pytest.fixture
def folder(tmp_path):
    return write_folder(tmp_path / "images")


def features_of(folder, extractor):
    files = sorted(folder.glob("*.png"))
    return extractor(torch.stack([to_unit_tensor(f) for f in files])).double().numpy()


def test_stats_are_the_mean_and_unbiased_covariance_of_the_features(folder):
    extractor = SmallExtractor()
    feats = features_of(folder, extractor)
    stats = compute_stats(folder, extractor, batch_size=5, progress=False)
    assert stats.n == 24 and stats.mu.dtype == np.float64
    np.testing.assert_allclose(stats.mu, feats.mean(0), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(stats.sigma, np.cov(feats, rowvar=False), rtol=1e-6, atol=1e-9)
    again = compute_stats(folder, extractor, batch_size=1, progress=False)
    np.testing.assert_allclose(again.sigma, stats.sigma, rtol=1e-6, atol=1e-9)


def test_a_list_of_images_of_mixed_sizes_gives_the_stats_of_each_image(folder):
    extractor = SmallExtractor()
    images = [Image.open(f).resize((16 + 4 * (i % 3), 16)) for i, f in enumerate(sorted(folder.glob("*.png")))]
    feats = torch.cat([extractor(to_unit_tensor(im)[None]) for im in images]).double().numpy()
    stats = compute_stats(images, extractor, batch_size=8, progress=False)
    np.testing.assert_allclose(stats.mu, feats.mean(0), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(stats.sigma, np.cov(feats, rowvar=False), rtol=1e-6, atol=1e-9)


def test_a_folder_against_itself_is_zero_and_a_perturbed_copy_is_not(folder, tmp_path):
    extractor = SmallExtractor()
    stats = compute_stats(folder, extractor, progress=False)
    self_fid = compute_fid(folder, folder, extractor, progress=False)
    assert abs(self_fid) < 1e-6 * np.trace(stats.sigma)
    brighter = write_folder(tmp_path / "brighter", shift=40)
    other_seed = write_folder(tmp_path / "other", seed=1)
    far, near = compute_fid(brighter, folder, extractor, progress=False), compute_fid(other_seed, folder, extractor,
                                                                                     progress=False)
    assert far > near > 1e3 * abs(self_fid)


def test_a_saved_npz_reference_gives_the_same_fid(folder, tmp_path):
    extractor = SmallExtractor()
    path = compute_stats(folder, extractor, progress=False).save(tmp_path / "ref.stats")
    assert path.name == "ref.stats"  # no ".npz" appended
    other = write_folder(tmp_path / "other", seed=1)
    np.testing.assert_allclose(compute_fid(other, path, extractor, progress=False),
                               compute_fid(other, folder, extractor, progress=False), rtol=1e-9)


def test_stats_round_trip_and_pytorch_fid_files_load(tmp_path):
    rng = np.random.default_rng(0)
    a = rng.normal(size=(5, 5))
    stats = FeatureStats(rng.normal(size=5), a @ a.T, 17)
    loaded = FeatureStats.load(stats.save(tmp_path / "s.npz"))
    np.testing.assert_array_equal(loaded.mu, stats.mu)
    np.testing.assert_array_equal(loaded.sigma, stats.sigma)
    assert loaded.n == 17
    np.savez(tmp_path / "pytorch_fid.npz", mu=stats.mu.astype(np.float32), sigma=stats.sigma.astype(np.float32))
    plain = FeatureStats.load(tmp_path / "pytorch_fid.npz")
    assert plain.n == 0 and plain.sigma.dtype == np.float64


def gaussians(d, seed):
    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=(d, d)), rng.normal(size=(d, d))
    return FeatureStats(rng.normal(size=d), a @ a.T + 0.1 * np.eye(d)), FeatureStats(rng.normal(size=d), b @ b.T)


def test_diagonal_and_commuting_covariances_match_the_closed_form():
    rng = np.random.default_rng(1)
    mu1, mu2, s1, s2 = rng.normal(size=4), rng.normal(size=4), rng.uniform(0.1, 3, 4), rng.uniform(0.1, 3, 4)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(s1) - np.sqrt(s2)) ** 2)
    assert fid_from_stats(FeatureStats(mu1, np.diag(s1)), FeatureStats(mu2, np.diag(s2))) == pytest.approx(expected,
                                                                                                          rel=1e-10)
    q, _ = np.linalg.qr(rng.normal(size=(4, 4)))  # same rotation of both: the covariances commute
    rotated = fid_from_stats(FeatureStats(mu1, q @ np.diag(s1) @ q.T), FeatureStats(mu2, q @ np.diag(s2) @ q.T))
    assert rotated == pytest.approx(expected, rel=1e-9)


def test_two_dimensional_non_commuting_covariances_match_the_closed_form():
    a, b = gaussians(2, seed=2)
    # For 2x2 PSD M, tr sqrt(M) = sqrt(tr M + 2 sqrt(det M)); here M = S1^1/2 S2 S1^1/2.
    trace_sqrt = np.sqrt(np.trace(a.sigma @ b.sigma) + 2 * np.sqrt(np.linalg.det(a.sigma) * np.linalg.det(b.sigma)))
    expected = np.sum((a.mu - b.mu) ** 2) + np.trace(a.sigma) + np.trace(b.sigma) - 2 * trace_sqrt
    assert fid_from_stats(a, b) == pytest.approx(expected, rel=1e-10)


def test_general_covariances_agree_with_the_eigenvalues_of_the_product_and_are_symmetric():
    a, b = gaussians(6, seed=3)
    trace_sqrt = np.sqrt(np.linalg.eigvals(a.sigma @ b.sigma).real).sum()  # pytorch-fid style, by another route
    expected = np.sum((a.mu - b.mu) ** 2) + np.trace(a.sigma) + np.trace(b.sigma) - 2 * trace_sqrt
    assert fid_from_stats(a, b) == pytest.approx(expected, rel=1e-9)
    assert fid_from_stats(b, a) == pytest.approx(fid_from_stats(a, b), rel=1e-9)
    assert fid_from_stats(a, a) == pytest.approx(0, abs=1e-9 * np.trace(a.sigma))


def test_errors_name_the_problem(folder, tmp_path):
    extractor = SmallExtractor()
    with pytest.raises(ValueError, match="at least 2 images, got 1"):
        compute_stats([Image.new("RGB", (8, 8))], extractor, progress=False)
    with pytest.raises(FileNotFoundError, match="image folder not found: .*missing"):
        compute_stats(tmp_path / "missing", extractor, progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no images .* in .*empty"):
        compute_stats(tmp_path / "empty", extractor, progress=False)
    with pytest.raises(FileNotFoundError, match="FID statistics file not found: .*ref.npz"):
        compute_fid(folder, tmp_path / "ref.npz", extractor, progress=False)
    with pytest.raises(ValueError, match="different feature sizes: 8 and 4"):
        fid_from_stats(FeatureStats(np.zeros(8), np.eye(8)), FeatureStats(np.zeros(4), np.eye(4)))
    with pytest.raises(ValueError, match=r"returned shape \(4,\) for 4 images"):
        compute_stats(folder, lambda x: x.mean((1, 2, 3)), batch_size=4, progress=False)
    with pytest.raises(ValueError, match="needs mu \\[D\\] and sigma \\[D, D\\]"):
        FeatureStats(np.zeros(3), np.eye(4))
