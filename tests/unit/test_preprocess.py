"""Server-side preprocessing equals open_clip's eval transform, for any image shape."""

from __future__ import annotations

import io

import numpy as np
import open_clip
import pytest
from PIL import Image

from promptserve.images import (
    ImageDecodeError,
    crop_uint8,
    decode_image,
    image_to_bytes,
    normalize,
)

MEAN, STD = open_clip.OPENAI_DATASET_MEAN, open_clip.OPENAI_DATASET_STD


@pytest.mark.parametrize(
    "size", [(320, 240), (240, 320), (224, 224), (100, 60), (225, 1000), (513, 511)]
)
@pytest.mark.parametrize("interpolation", ["bicubic", "bilinear"])
def test_matches_open_clip_transform(size, interpolation):
    rng = np.random.default_rng(sum(size))
    img = Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
    ref = open_clip.image_transform(
        224, is_train=False, mean=MEAN, std=STD, interpolation=interpolation
    )(img)
    got = normalize(
        crop_uint8(img, size=224, interpolation=interpolation)[None], mean=MEAN, std=STD
    )[0]
    np.testing.assert_allclose(got, ref.numpy(), atol=1e-6)


def test_decode_refuses_non_images_and_bombs():
    with pytest.raises(ImageDecodeError, match="not a decodable image"):
        decode_image(b"\x89PNG but not really")
    buf = io.BytesIO()
    Image.new("L", (4000, 4000)).save(buf, format="PNG")
    with pytest.raises(ImageDecodeError, match="pixel limit"):
        decode_image(buf.getvalue(), max_pixels=1_000_000)
    rgba = io.BytesIO()
    Image.new("RGBA", (10, 10)).save(rgba, format="PNG")
    assert decode_image(rgba.getvalue()).mode == "RGB"


def test_client_downscale_makes_server_resize_a_no_op():
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 256, (900, 1300, 3), dtype=np.uint8))
    small = decode_image(image_to_bytes(img, downscale_to=224))
    assert min(small.size) == 224
    np.testing.assert_array_equal(crop_uint8(small, size=224), crop_uint8(img, size=224))
