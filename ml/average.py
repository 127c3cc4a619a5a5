"""Weight averaging: one run's epoch checkpoints averaged into one bundle.

Stochastic weight averaging (Izmailov, Podoprikhin, Garipov, Vetrov and Wilson, "Averaging Weights
Leads to Wider Optima and Better Generalization", UAI 2018): the uniform average of the weights a run
passes through late in training tends to lie in a flatter part of the loss surface than any one of
them, and to generalise better, at no cost at inference (it is one model, not an ensemble).

Batch normalisation needs care. The averaged weights produce other activations than any checkpoint,
so the average of the checkpoints' moving statistics does not describe them; as in the paper, the
statistics are recomputed by one pass over the training split (no augmentation, dropout off), as the
exact mean over its batches.

``python -m ml.average --data DIR --checkpoints runs/<name>/epochs/epoch_08.keras ... --like
runs/.../<name>.json --name NAME --output-dir DIR``; ``ml.train --keep-epochs`` keeps the checkpoints.
The result is calibrated on the validation split like any trained bundle, and its JSON records which
checkpoints (with their SHA-256) went in.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import keras
import numpy as np
from tqdm import tqdm

from ml import losses
from ml.calibrate import apply_choice, calibrate, cleanup_text, tta_text, validation_slices
from ml.data import load_slices, make_dataset, read_records, split_ids_as_trained, to_arrays
from ml.inference import Segmenter, file_sha256, save_bundle, set_precision
from ml.models import ModelSpec

PAPER = (
    "Izmailov et al. 2018, Averaging Weights Leads to Wider Optima and Better Generalization "
    "(stochastic weight averaging)"
)


def average_weights(paths: Sequence[str | Path]) -> list[np.ndarray]:
    """The element-wise mean of the weights of the ``.keras`` models at ``paths`` (same graph)."""

    if len(paths) < 2:
        raise ValueError(f"averaging needs at least two checkpoints, got {len(paths)}.")
    total, shapes = None, None
    for path in paths:
        if not Path(path).is_file():
            raise FileNotFoundError(f"No checkpoint at {path}.")
        weights = [
            np.asarray(w, np.float64) for w in keras.models.load_model(path, compile=False).get_weights()
        ]
        if total is None:
            total, shapes = weights, [w.shape for w in weights]
        elif [w.shape for w in weights] != shapes:
            raise ValueError(f"{path} is another graph than {paths[0]}: average checkpoints of one run.")
        else:
            total = [t + w for t, w in zip(total, weights, strict=True)]
    return [(t / len(paths)).astype(np.float32) for t in total]


def _walk(layer) -> Iterable:
    for child in getattr(layer, "layers", []):
        yield child
        yield from _walk(child)


def recompute_batchnorm(
    model, images: np.ndarray, *, batch_size: int = 16, progress: Callable[[int], None] | None = None
) -> int:
    """Set every trainable batch-norm layer's moving mean and variance to the mean, over the batches of
    ``images``, of its batch statistics, with dropout off. Returns how many layers were reset.

    Runs eagerly: each batch sets the layers' momentum to k/(k+1), so that after the last batch the
    moving values are the plain mean over all batches, not an exponential average.
    """

    layers = list(_walk(model))
    norms = [
        layer for layer in layers if isinstance(layer, keras.layers.BatchNormalization) and layer.trainable
    ]
    dropouts = [layer for layer in layers if isinstance(layer, keras.layers.Dropout)]
    saved_momentum = [bn.momentum for bn in norms]
    saved_rates = [d.rate for d in dropouts]
    for bn in norms:
        bn.moving_mean.assign(np.zeros(bn.moving_mean.shape, np.float32))
        bn.moving_variance.assign(np.ones(bn.moving_variance.shape, np.float32))
    for d in dropouts:
        d.rate = 0.0
    try:
        for k, start in enumerate(range(0, len(images), batch_size)):
            for bn in norms:
                bn.momentum = k / (k + 1)
            model(images[start : start + batch_size], training=True)
            if progress:
                progress(min(batch_size, len(images) - start))
    finally:
        for bn, momentum in zip(norms, saved_momentum, strict=True):
            bn.momentum = momentum
        for d, rate in zip(dropouts, saved_rates, strict=True):
            d.rate = rate
    return len(norms)


def average_run(
    checkpoints: Sequence[str | Path],
    like: str | Path,
    data_dir: str | Path,
    name: str,
    output_dir: str | Path,
    *,
    precision: str = "auto",
    batch_size: int = 16,
    log: Callable[[str], None] = print,
    show_progress: bool = True,
    limit: int | None = None,
) -> dict:
    """Average ``checkpoints``, recompute batch norm on the training split of ``like`` (the bundle JSON
    that ``ml.train`` wrote for the run), calibrate on its validation split and write
    ``<output_dir>/<name>.keras`` and ``.json``. Returns the metadata. ``limit`` caps the training and
    validation slices used (smoke tests)."""

    like = Path(like)
    if like.suffix == ".keras":
        like = like.with_suffix(".json")
    if not like.is_file():
        raise FileNotFoundError(f"No bundle JSON at {like}: pass the .json that ml.train wrote for the run.")
    meta = json.loads(like.read_text())
    if "spec" not in meta or "split" not in meta.get("training", {}):
        raise ValueError(
            f"{like} has no spec or training split: pass the .json that ml.train wrote for the run."
        )
    split_meta = meta["training"]["split"]

    precision = set_precision(precision)
    model = ModelSpec.from_config(meta["spec"]).build()
    weights = average_weights(checkpoints)
    if [w.shape for w in weights] != [tuple(v.shape) for v in model.get_weights()]:
        raise ValueError(
            f"the checkpoints are another graph than {like}'s spec: average checkpoints of that run."
        )
    model.set_weights(weights)
    log(f"averaged {len(checkpoints)} checkpoints ({precision})")

    size = meta["spec"]["input_size"]
    train = load_slices(data_dir, split_ids_as_trained(read_records(data_dir), split_meta, "train")[:limit])
    x_train, _ = to_arrays(train, size)
    with tqdm(
        total=len(x_train),
        desc="batch-norm statistics (train split)",
        unit="slice",
        disable=None if show_progress else True,
    ) as bar:
        n_norms = recompute_batchnorm(model, x_train, batch_size=batch_size, progress=bar.update)
    log(f"recomputed {n_norms} batch-norm layers on {len(x_train)} training slices")

    val = validation_slices(data_dir, split_meta)
    if limit:
        val = val.subset([r.id for r in val.records][:limit])
    x_val, y_val = to_arrays(val, size)
    model.compile(
        loss=losses.get_loss(meta["training"].get("loss", "bce_dice")), metrics=[losses.dice, losses.iou]
    )
    at_half = model.evaluate(make_dataset(x_val, y_val, batch_size=batch_size), verbose=0, return_dict=True)
    log(
        "validation Dice at 0.5, model input size, no TTA (as ml.train logs per epoch): "
        f"{at_half['dice']:.4f}"
    )

    choice = calibrate(Segmenter(model, {"name": name}), val)
    v = choice["val_metrics"]
    log(
        f"validation at native resolution: Dice {v['dice_mean']:.4f}, IoU {v['iou_mean']:.4f}, by type "
        f"{json.dumps({k: round(x, 4) for k, x in v['dice_by_type'].items()})}; "
        f"threshold {choice['threshold']}, "
        f"{tta_text(choice)}, {cleanup_text(choice['postprocess'])}"
    )

    metadata = apply_choice({k: x for k, x in meta.items() if k != "name"}, choice)
    metadata["weight_average"] = {
        "method": "uniform mean of the checkpoints' weights; batch-norm statistics recomputed on the "
        "training split (exact mean over its batches, no augmentation, dropout off)",
        "paper": PAPER,
        "checkpoints": [{"path": str(p), "sha256": file_sha256(p)} for p in checkpoints],
        "run_bundle": str(like),
        "batchnorm_slices": len(x_train),
        "val_dice_at_0_5": round(float(at_half["dice"]), 4),
        "precision": precision,
    }
    path = save_bundle(model, output_dir, name, metadata)
    log(f"wrote {path} and {path.with_suffix('.json')}")
    keras.backend.clear_session()
    return {"name": name, "path": str(path), **metadata}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m ml.average",
        description="Average one run's epoch checkpoints (stochastic weight averaging), recompute batch-norm "
        "statistics on the training split, calibrate on the validation split and write a bundle. "
        "Compare it with the shipped one before shipping: python -m ml.calibrate --compare.",
    )
    parser.add_argument("--data", required=True, help="the training data folder (shared layout)")
    parser.add_argument(
        "--checkpoints",
        nargs="+",
        required=True,
        metavar="KERAS",
        help="two or more epoch models of one run (ml.train --keep-epochs keeps them in <run-dir>/epochs/)",
    )
    parser.add_argument(
        "--like",
        required=True,
        metavar="JSON",
        help="the bundle JSON ml.train wrote for that run: its spec, split and training record are kept",
    )
    parser.add_argument("--name", required=True, help="name of the averaged bundle")
    parser.add_argument(
        "--output-dir", default="runs/averaged", help="where to write it (default runs/averaged)"
    )
    parser.add_argument(
        "--precision",
        default="auto",
        choices=["auto", "fp32", "bf16"],
        help="precision of the batch-norm pass and calibration (default auto: bf16 where the "
        "CPU has bf16 units); the bundle is saved in float32 either way",
    )
    parser.add_argument(
        "--batch-size", type=int, default=16, help="batch size of the batch-norm pass (default 16)"
    )
    args = parser.parse_args(argv)
    try:
        average_run(
            args.checkpoints,
            args.like,
            args.data,
            args.name,
            args.output_dir,
            precision=args.precision,
            batch_size=args.batch_size,
            log=lambda msg: print(msg, flush=True),
        )
    except (ValueError, FileNotFoundError) as exc:
        raise SystemExit(f"error: {exc}") from exc


if __name__ == "__main__":
    main()
