from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cnnlab import data
from cnnlab.data.augment import Augment, parse_augment, resample_boxes, sample_rrc_boxes
from cnnlab.data.dataset import channel_stats
from cnnlab.errors import CnnlabError, UnknownNameError

MEAN, STD = (0.4, 0.5, 0.6), (0.2, 0.25, 0.3)


def _batch(b: int = 16, h: int = 12, w: int = 12, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (b, 3, h, w), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


def _g(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _oracle_index_ops(x: torch.Tensor, params) -> torch.Tensor:  # noqa: ANN001
    """Per-image loop with plain slicing: the slow reference for the fused gather."""
    out = []
    for i in range(len(x)):
        img = x[i]
        for op, p in params:
            if op.name == "flip" and p["flip"][i]:
                img = img.flip(-1)
            elif op.name == "crop":
                pad, dy, dx = p["pad"], int(p["dy"][i]), int(p["dx"][i])
                h, w = img.shape[-2:]
                img = F.pad(img, (pad, pad, pad, pad))[:, dy : dy + h, dx : dx + w]
            elif op.name == "rcrop":
                oh, ow = p["out"]
                img = img[:, int(p["dy"][i]) : int(p["dy"][i]) + oh, int(p["dx"][i]) : int(p["dx"][i]) + ow]
        out.append(img)
    return torch.stack(out)


@pytest.mark.parametrize("spec", ["flip", "crop:3", "flip,crop:4", "crop:2,flip,rcrop:9", "rcrop:0.5,flip,flip"])
def test_fused_index_ops_match_per_image_oracle(spec: str) -> None:
    x = _batch()
    aug = Augment(spec, MEAN, STD)
    params = aug.sample(*x.shape, _g())
    fast = aug.apply(x, params, normalize=False)
    slow = _oracle_index_ops(x, params).float() / 255
    assert torch.equal(fast, slow)
    # normalization is (x / 255 - mean) / std per channel
    normed = aug.apply(x, params)
    ref = (slow - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
    assert torch.allclose(normed, ref, atol=1e-5)


def test_flip_is_an_involution() -> None:
    x = _batch()
    aug = Augment("flip")
    params = aug.sample(*x.shape, _g())
    once = aug.apply(x, params, normalize=False)
    twice = aug.apply((once * 255).round().to(torch.uint8), params, normalize=False)
    assert torch.equal(twice, x.float() / 255)
    flipped = params[0][1]["flip"]
    assert 0 < flipped.sum() < len(x)  # some flipped, some not
    assert torch.equal(once[~flipped], x[~flipped].float() / 255)


def test_crops_stay_inside() -> None:
    x = _batch(64, 10, 10) | 1  # no zero pixels in the source, so zeros can only be padding
    aug = Augment("crop:4")
    params = aug.sample(*x.shape, _g())
    out = aug.apply(x, params, normalize=False)
    p = params[0][1]
    for i in range(len(x)):
        dy, dx = int(p["dy"][i]) - 4, int(p["dx"][i]) - 4
        nonzero = (out[i] != 0).all(0)
        rows, cols = torch.nonzero(nonzero, as_tuple=True)
        # the visible region is exactly the image shifted by (dy, dx), within the 10x10 frame
        assert rows.min() == max(0, -dy) and rows.max() == min(9, 9 - dy)
        assert cols.min() == max(0, -dx) and cols.max() == min(9, 9 - dx)
    assert p["dy"].min() >= 0 and p["dy"].max() <= 8 and len(set(p["dy"].tolist())) > 3
    r = Augment("rcrop:7")
    params = r.sample(*x.shape, _g(1))
    assert r.apply(x, params, normalize=False).shape == (64, 3, 7, 7)
    assert params[0][1]["dy"].max() <= 3


def test_rrc_boxes() -> None:
    b = sample_rrc_boxes(2000, 32, 40, _g())
    top, left, h, w = b.unbind(1)
    assert (top >= 0).all() and (left >= 0).all() and (top + h <= 32).all() and (left + w <= 40).all()
    area = h * w / (32 * 40)
    assert area.min() >= 0.07 and area.max() <= 1.0
    ratio = w / h
    assert ratio.min() > 0.7 and ratio.max() < 1.45
    assert area.std() > 0.15  # a spread of scales, not a constant
    # An image whose aspect is outside the range falls back to a centre crop of allowed aspect.
    fb = sample_rrc_boxes(10, 4, 40, _g(), scale=(0.99, 1.0))
    assert (fb[:, 3] / fb[:, 2] <= 4 / 3 + 0.01).all()


def test_resample_matches_crop_and_interpolate_oracle() -> None:
    x = torch.rand(6, 3, 20, 20)
    boxes = torch.tensor([[0, 0, 20, 20], [3, 5, 10, 12], [10, 2, 8, 8], [1, 1, 16, 16], [4, 0, 12, 9], [0, 7, 5, 13]])
    for out in (8, 20, 30):
        fast = resample_boxes(x, boxes.float(), out, out)
        for i, (t, l, h, w) in enumerate(boxes.tolist()):
            crop = x[i : i + 1, :, t : t + h, l : l + w]
            slow = F.interpolate(crop, size=(out, out), mode="bilinear", align_corners=False)[0]
            # Equal away from the border ring where upsampling samples less than half a source pixel from the
            # box edge: there grid_sample reads the neighbour outside the box, interpolate clamps to the box.
            rh, rw = (max(1, math.ceil(0.5 * out / n - 0.5)) for n in (h, w))
            inner = (slice(None), slice(rh, out - rh), slice(rw, out - rw))
            assert torch.allclose(fast[i][inner], slow[inner], atol=1e-5), (i, out)
            if (h, w) == (out, out):
                assert torch.allclose(fast[i], crop[0], atol=1e-6)  # a same-size box is the crop itself


def test_rrc_and_scale_jitter_output() -> None:
    x = _batch(8, 16, 16)
    out = Augment("rrc:12,flip", MEAN, STD)(x, _g())
    assert out.shape == (8, 3, 12, 12) and out.dtype == torch.float32
    aug = Augment("scale:16-32:16")
    params = aug.sample(*x.shape, _g())
    bh = params[0][1]["boxes"][:, 2]
    assert (bh <= 16).all() and (bh >= 8).all()  # a 16-crop of a 16..32 image covers 8..16 source pixels
    assert aug.apply(x, params).shape == (8, 3, 16, 16)
    with pytest.raises(CnnlabError, match="scale"):
        Augment("scale:8-12:16")(x, _g())


def test_color_jitter_matches_torchvision_per_image() -> None:
    tf = pytest.importorskip("torchvision.transforms.functional")
    x = _batch(12)
    aug = Augment("jitter:0.5")
    params = aug.sample(*x.shape, _g())
    fast = aug.apply(x, params, normalize=False)
    fac = params[0][1]["factors"]
    assert fac.min() >= 0.5 and fac.max() <= 1.5
    for i in range(len(x)):
        img = x[i].float() / 255
        img = tf.adjust_brightness(img, float(fac[i, 0]))
        img = tf.adjust_contrast(img, float(fac[i, 1]))
        img = tf.adjust_saturation(img, float(fac[i, 2]))
        # torchvision's luma weights are 0.2989/0.587/0.114, ours 0.299/0.587/0.114
        assert torch.allclose(fast[i], img, atol=2e-3)


def test_pca_lighting_follows_the_eigendecomposition() -> None:
    rng = np.random.default_rng(0)
    mix = np.array([[0.5, 0.3, 0.1], [0.3, 0.4, 0.2], [0.1, 0.2, 0.3]])
    pix = np.clip(0.4 + rng.normal(size=(4000, 3)) @ mix * 0.3, 0, 1)
    x = (pix * 255).round().astype(np.uint8).reshape(1000, 4, 1, 3).transpose(0, 3, 1, 2)  # (N, 3, 4, 1)
    _, _, eigval, eigvec = channel_stats(np.ascontiguousarray(x))
    cov = np.cov(x.transpose(1, 0, 2, 3).reshape(3, -1) / 255, bias=True)
    assert np.allclose(eigvec @ np.diag(eigval) @ eigvec.T, cov, atol=1e-10)  # V diag(lambda) V^T = Cov
    assert np.all(np.diff(eigval) <= 0)
    aug = Augment(
        "pca:0.1", eigval=torch.tensor(eigval, dtype=torch.float32), eigvec=torch.tensor(eigvec, dtype=torch.float32)
    )
    xb = torch.from_numpy(np.ascontiguousarray(x[:512]))
    params = aug.sample(*xb.shape, _g())
    delta = aug.apply(xb, params, normalize=False) - xb.float() / 255
    assert torch.allclose(delta, delta[:, :, :1, :1].expand_as(delta), atol=1e-6)  # one shift per image
    alpha = params[0][1]["alpha"]
    coords = delta[:, :, 0, 0].double() @ torch.tensor(eigvec)  # shift in the eigenbasis = alpha * lambda
    assert torch.allclose(coords, alpha.double() * torch.tensor(eigval), atol=1e-6)
    assert 0.08 < float(alpha.std()) < 0.12


def test_cutout_matches_oracle() -> None:
    x = _batch(20, 10, 10)
    aug = Augment("cutout:4", (0.0,) * 3, (1.0,) * 3)
    params = aug.sample(*x.shape, _g())
    fast = aug.apply(x, params)
    centers = params[0][1]["centers"]
    slow = x.float() / 255
    for i in range(len(x)):
        r, c = centers[i].tolist()
        slow[i, :, max(0, r - 2) : max(0, r + 2), max(0, c - 2) : max(0, c + 2)] = 0
    assert torch.allclose(fast, slow, atol=1e-6)
    assert torch.equal(fast == 0, slow == 0)


def test_seeds_reproduce_and_differ() -> None:
    x = _batch(32)
    aug = Augment("flip,crop:4,jitter:0.3,cutout:4", MEAN, STD)
    a, b, c = aug(x, _g(5)), aug(x, _g(5)), aug(x, _g(6))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_presets_and_parsing() -> None:
    assert [o.name for o in parse_augment("cifar")] == ["flip", "crop"]
    assert parse_augment("none") == [] and parse_augment("") == []
    assert [o.name for o in parse_augment("alexnet")] == ["rcrop", "flip", "pca"]
    assert set(data.PRESETS) == {"none", "cifar", "imagenet", "alexnet"}
    with pytest.raises(UnknownNameError, match="did you mean flip"):
        parse_augment("flop")
    with pytest.raises(CnnlabError, match="needs a value"):
        Augment("crop")(_batch(), _g())
    with pytest.raises(CnnlabError, match="eigenvectors"):
        Augment("pca:0.1")
    # Imagenet and alexnet presets run end to end on a batch
    ev, evec = torch.tensor([0.2, 0.02, 0.005]), torch.eye(3)
    x = _batch(4, 32, 32)
    assert Augment("imagenet", MEAN, STD, ev, evec)(x, _g()).shape == (4, 3, 32, 32)
    assert Augment("alexnet", MEAN, STD, ev, evec)(x, _g()).shape == (4, 3, 28, 28)


def test_gray_images() -> None:
    x = _batch(6)[:, :1]
    out = Augment("flip,crop:2,jitter:0.4,cutout:3", (0.5,), (0.25,))(x, _g())
    assert out.shape == (6, 1, 12, 12)
