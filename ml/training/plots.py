"""The training-curve PNG beside a run's CSV log."""

from __future__ import annotations

import csv
from pathlib import Path

# A Figure without pyplot: no global backend or figure registry, so it is safe in any process.
from matplotlib.figure import Figure


def plot_curves(
    csv_path: Path, png_path: Path, *, title: str = "per-image Dice / IoU at 0.5 (model input size)"
) -> None:
    """Loss on the left, Dice / IoU / accuracy on the right, per epoch of ``csv_path`` (Keras'
    ``CSVLogger``); nothing is written for an empty log."""
    with csv_path.open() as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        return
    epochs = [int(r["epoch"]) + 1 for r in rows]
    fig = Figure(figsize=(10, 4))
    ax1, ax2 = fig.subplots(1, 2)
    for key in ("loss", "val_loss"):
        if key in rows[0]:
            ax1.plot(epochs, [float(r[key]) for r in rows], label=key)
    # dice, val_dice, ...; a deep-supervision model's are its last head's (mask_x0N_dice)
    for key in [k for k in rows[0] if k.rsplit("_", 1)[-1] in ("dice", "iou", "accuracy")]:
        ax2.plot(epochs, [float(r[key]) for r in rows], label=key)
    for ax, name in ((ax1, "loss"), (ax2, title)):
        ax.set_xlabel("epoch")
        ax.legend()
        ax.set_title(name)
    fig.tight_layout()
    fig.savefig(png_path, dpi=90)
