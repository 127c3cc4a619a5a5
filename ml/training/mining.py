"""Hard-example mining (``--hard-mining STRENGTH``): after each epoch, every training slice is outlined by
the model as it now stands, and the next epoch draws a slice the more often the worse that outline is.

A slice's draw weight is its tumour type's weight (``--type-weight``, 1 if none) times
``1 + STRENGTH * (1 - Dice)``, its Dice that of the model's mask (input size, no augmentation, threshold
0.5) against the expert's. A slice the model misses outright is drawn up to ``1 + STRENGTH`` times as often
as one it outlines perfectly; as many slices are drawn per epoch as there are, with replacement. The idea
of spending the updates on the examples the model still gets wrong is that of online hard-example mining
(Shrivastava, Gupta & Girshick, *Training Region-based Object Detectors with Online Hard Example Mining*,
CVPR 2016) and of selecting training data by its latest loss (Loshchilov & Hutter, *Online Batch Selection
for Faster Training of Neural Networks*, ICLR workshop 2016); here it is applied to whole slices, for the
kind the segmenters miss (mostly glioma, outlined elsewhere).

Outlining the training slices costs about one forward pass over them per epoch; the seconds are logged.
"""

from __future__ import annotations

import time

import numpy as np

from ml.data import DrawWeights

MISSED_BELOW = 0.1  # a slice with a Dice under this is missed outright, as the evaluation counts it


def slice_dice(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Each slice's Dice of two ``(N, S, S, 1)`` binary masks; 1 where both are empty (as
    ``ml.evaluate.dice_iou`` scores them)."""
    pred, truth = pred.reshape(len(pred), -1).astype(bool), truth.reshape(len(truth), -1).astype(bool)
    inter = np.logical_and(pred, truth).sum(axis=1)
    total = pred.sum(axis=1) + truth.sum(axis=1)
    return np.where(total == 0, 1.0, 2.0 * inter / np.maximum(total, 1))


def mask_output(outputs):
    """The mask of a model's prediction: a joint model's ``mask`` output, a deep-supervision model's
    last head, or the single output."""
    if isinstance(outputs, dict):
        return outputs["mask"]
    if isinstance(outputs, (list, tuple)):
        return outputs[-1]
    return outputs


def mined_weights(base: np.ndarray, dice: np.ndarray, strength: float) -> np.ndarray:
    """The next epoch's draw weights: ``base * (1 + strength * (1 - dice))``."""
    return np.asarray(base, np.float64) * (1.0 + strength * (1.0 - np.clip(dice, 0.0, 1.0)))


def hard_example_mining(
    images: np.ndarray,
    masks: np.ndarray,
    draws: DrawWeights,
    strength: float,
    *,
    batch_size: int,
    log=print,
    mine_at_start: bool = False,
):
    """A Keras callback that re-weights ``draws`` after each epoch from the model's Dice on each training
    slice (``images``, ``masks`` at the model's input size, in the order ``draws`` weighs them), and adds
    to the epoch's logs (so to log.csv) ``train_missed``, the share of training slices missed outright,
    and ``mining_seconds``. ``mine_at_start``: also before the first epoch of this call to ``fit``, for a
    run resumed or warm-started, whose model has already learnt something."""
    import keras  # noqa: PLC0415 (TensorFlow loads only when a run starts)

    truth = np.asarray(masks) > 0.5

    class HardExampleMining(keras.callbacks.Callback):
        def mine(self) -> tuple[float, float]:
            start = time.time()
            probabilities = mask_output(self.model.predict(images, batch_size=batch_size, verbose=0))
            dice = slice_dice(np.asarray(probabilities, np.float32) > 0.5, truth)
            draws.set(mined_weights(draws.base, dice, strength))
            return float((dice < MISSED_BELOW).mean()), time.time() - start

        def on_train_begin(self, logs=None):
            if mine_at_start:
                missed, _ = self.mine()
                log(f"hard-example mining before the first epoch: {missed:.1%} of training slices missed")

        def on_epoch_end(self, epoch, logs=None):
            missed, seconds = self.mine()
            if logs is not None:  # the dict the CSV logger writes after this callback
                logs["train_missed"], logs["mining_seconds"] = missed, seconds
            log(f"hard-example mining: {missed:.1%} of training slices missed, {seconds:.0f} s")

    return HardExampleMining()
