"""Self-supervised pretraining's distortions: restore the slice from a distorted copy of it.

After Zhou et al., "Models Genesis: Generic Autodidactic Models for 3D Medical Image Analysis" (MICCAI 2019;
Medical Image Analysis 2021), in 2D: a segmenter's network learns to undo a non-linear change of intensity,
shuffled pixels in small windows, and boxes painted over with noise (inside the slice, or all but a few
boxes of it). To do so it must learn what a brain slice looks like, from the images alone: no mask is read.
The rates are the paper's: intensity 0.9, local shuffling 0.5, painting 0.9 of which in-painting 0.2.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class Distortions:
    """How often each distortion applies to a slice, and how many windows the shuffling moves."""

    intensity: float = 0.9
    local_shuffle: float = 0.5
    paint: float = 0.9
    inpaint_share: float = 0.2  # of the painted slices; the others are out-painted
    # at 256 px, scaled with the slice's area: ours (the paper counts windows of 3D sub-volumes)
    shuffle_windows: int = 200

    def as_dict(self) -> dict:
        return asdict(self)


GENESIS = Distortions()  # the paper's rates


def intensity_curve(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The slice through a random cubic Bézier curve from (0, 0) to (1, 1) (or, for half the slices, from
    (0, 1) to (1, 0)): a smooth change of intensity that keeps which pixels are alike."""
    t = np.linspace(0.0, 1.0, 1000)
    (x1, y1), (x2, y2) = rng.random((2, 2))
    bernstein = (3 * (1 - t) ** 2 * t, 3 * (1 - t) * t**2, t**3)
    xs = bernstein[0] * x1 + bernstein[1] * x2 + bernstein[2]
    ys = bernstein[0] * y1 + bernstein[1] * y2 + bernstein[2]
    if rng.random() < 0.5:
        ys = 1.0 - ys
    order = np.argsort(xs)
    return np.interp(image, xs[order], ys[order]).astype(np.float32)


def local_shuffle(image: np.ndarray, rng: np.random.Generator, windows: int) -> np.ndarray:
    """``windows`` small windows (each side up to a tenth of the slice's) with their pixels shuffled: the
    slice's global shape stays, its local texture must be restored."""
    out = image.copy()
    h, w = image.shape
    for _ in range(windows):
        bh, bw = rng.integers(1, max(2, h // 10) + 1), rng.integers(1, max(2, w // 10) + 1)
        y, x = rng.integers(0, h - bh + 1), rng.integers(0, w - bw + 1)
        window = out[y : y + bh, x : x + bw].ravel()
        out[y : y + bh, x : x + bw] = rng.permutation(window).reshape(bh, bw)
    return out


def _boxes(shape, rng: np.random.Generator, low: float, high: float) -> list[tuple[slice, slice]]:
    """One to five boxes, each side between ``low`` and ``high`` of the slice's: another box with
    probability 0.95 after each, as in the paper."""
    h, w = shape
    boxes = []
    for _ in range(5):
        bh = int(rng.integers(max(1, int(low * h)), max(1, int(high * h)) + 1))
        bw = int(rng.integers(max(1, int(low * w)), max(1, int(high * w)) + 1))
        y, x = int(rng.integers(0, h - bh + 1)), int(rng.integers(0, w - bw + 1))
        boxes.append((slice(y, y + bh), slice(x, x + bw)))
        if rng.random() >= 0.95:
            break
    return boxes


def inpaint(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One to five boxes (a sixth to a third of each side) painted over with uniform noise."""
    out = image.copy()
    for ys, xs in _boxes(image.shape, rng, 1 / 6, 1 / 3):
        out[ys, xs] = rng.random(out[ys, xs].shape, dtype=np.float32)
    return out


def outpaint(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Noise everywhere but one to five boxes (three to four sevenths of each side) of the slice."""
    out = rng.random(image.shape, dtype=np.float32)
    for ys, xs in _boxes(image.shape, rng, 3 / 7, 4 / 7):
        out[ys, xs] = image[ys, xs]
    return out


def distort(image: np.ndarray, rng: np.random.Generator, rates: Distortions = GENESIS) -> np.ndarray:
    """A distorted copy of one ``(H, W)`` slice in [0, 1], float32: each distortion with its rate."""
    out = np.asarray(image, dtype=np.float32)
    if rng.random() < rates.local_shuffle:
        windows = max(1, round(rates.shuffle_windows * out.size / 256**2))
        out = local_shuffle(out, rng, windows)
    if rng.random() < rates.intensity:
        out = intensity_curve(out, rng)
    if rng.random() < rates.paint:
        out = inpaint(out, rng) if rng.random() < rates.inpaint_share else outpaint(out, rng)
    return out


def distort_batch(images: np.ndarray, rng: np.random.Generator, rates: Distortions = GENESIS):
    """``distort`` on each slice of an ``(N, H, W, 1)`` batch."""
    return np.stack([distort(image[..., 0], rng, rates) for image in images])[..., None]


def restoration_batches(
    images: np.ndarray, *, batch_size: int, seed: int, first_epoch: int = 0, rates: Distortions = GENESIS
):
    """A ``keras.utils.PyDataset`` of (distorted, original) batches over ``images`` ``(N, H, W, 1)``: every
    slice once per epoch, in a shuffled order and with new distortions each epoch, both drawn from
    ``seed`` and the epoch (a run resumed at ``first_epoch`` draws what it would have)."""
    import keras  # noqa: PLC0415 (TensorFlow loads only when a run starts)

    class RestorationBatches(keras.utils.PyDataset):
        def __init__(self):
            super().__init__()
            self.epoch = first_epoch
            self._order = self._draw_order()

        def _rng(self, *extra: int) -> np.random.Generator:
            return np.random.default_rng([seed, self.epoch, *extra])

        def _draw_order(self) -> np.ndarray:
            return self._rng().permutation(len(images))

        def __len__(self) -> int:
            return -(-len(images) // batch_size)

        def __getitem__(self, index: int):
            picked = images[self._order[index * batch_size : (index + 1) * batch_size]]
            return distort_batch(picked, self._rng(index + 1), rates), picked

        def on_epoch_end(self) -> None:
            self.epoch += 1
            self._order = self._draw_order()

    return RestorationBatches()
