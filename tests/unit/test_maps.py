"""Numpy map arithmetic against the libraries the official code uses: torch's bilinear
`F.interpolate` (align_corners=False) and scipy's `ndimage.gaussian_filter`."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from promptserve.models.clip.maps import gaussian_blur, resize_bilinear


@pytest.mark.parametrize(
    ("src", "dst"),
    [((4, 4), (56, 56)), ((37, 37), (518, 518)), ((5, 7), (13, 9)), ((6, 6), (3, 3))],
)
def test_resize_matches_torch_bilinear(src, dst):
    x = np.random.default_rng(0).standard_normal((2, 3, *src)).astype(np.float32)
    want = torch.nn.functional.interpolate(torch.from_numpy(x), dst, mode="bilinear").numpy()
    np.testing.assert_allclose(resize_bilinear(x, dst), want, atol=1e-4)


@pytest.mark.parametrize(
    ("shape", "sigma"), [((56, 56), 4), ((10, 12), 4), ((5, 5), 1.5), ((3, 40), 4)]
)
def test_blur_matches_scipy(shape, sigma):
    x = np.random.default_rng(1).standard_normal((2, *shape)).astype(np.float32)
    want = np.stack([gaussian_filter(m, sigma=sigma) for m in x])
    np.testing.assert_allclose(gaussian_blur(x, sigma), want, atol=1e-6)
    assert np.array_equal(gaussian_blur(x, 0), x)
