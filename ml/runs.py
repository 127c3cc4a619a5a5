"""Summarise trained bundles side by side: ``python -m ml.runs BUNDLE.json ... [--json OUT]``.

For each bundle JSON that ``ml.train`` wrote: its encoder, size, training time and epochs, the validation
Dice it calibrated to (in-sample: its threshold and TTA were chosen on that split) and, from
``<run-dir>/log.csv`` when it is still there, the in-training validation Dice of every epoch (threshold
0.5, no TTA). It reads no data and loads no model, so it is how a screen of several runs (e.g. one
encoder against another under the same budget) becomes a table and a JSON anyone can re-derive.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path


def summarise(bundle_json: str | Path, runs_dir: str | Path = "runs") -> dict:
    """One bundle's figures; its per-epoch log is read from ``<runs_dir>/<name>/log.csv`` (``ml.train``'s
    default run directory) when it is there."""
    path = Path(bundle_json)
    if not path.is_file():
        raise FileNotFoundError(f"no bundle JSON at {path}")
    meta = json.loads(path.read_text())
    if not all(key in meta for key in ("spec", "training", "metrics")):
        raise ValueError(f"{path} is not the JSON of a trained bundle (it needs spec, training and metrics)")
    training, val = meta["training"], meta["metrics"]["val"]
    keras_path = path.with_suffix(".keras")
    row = {
        "name": meta.get("name", path.stem),
        "architecture": meta.get("architecture"),
        "encoder": meta.get("encoder"),
        "encoder_weights": meta.get("encoder_weights"),
        "input_size": meta.get("input_size"),
        "parameters": meta.get("parameters"),
        "initialised_from": bool(meta.get("initialised_from")),
        "epochs_done": training.get("epochs_done"),
        "best_epoch": training.get("best_epoch"),
        "train_seconds": training.get("train_seconds"),
        "precision": training.get("precision"),
        "val_dice_mean": val["dice_mean"],
        "val_iou_mean": val["iou_mean"],
        "val_dice_by_type": dict(sorted(val.get("dice_by_type", {}).items())),
        "threshold": meta.get("threshold"),
        "tta_scales": meta.get("tta_scales"),
        "bundle_mb": round(keras_path.stat().st_size / 1e6, 1) if keras_path.is_file() else None,
        "like": training.get("like"),
    }
    log = Path(runs_dir) / row["name"] / "log.csv"
    if log.is_file():
        epochs = list(csv.DictReader(log.open()))
        # A joint model (--type-head) logs its mask's Dice as mask_dice.
        dice = "dice" if not epochs or "dice" in epochs[0] else "mask_dice"
        row["in_training_val_dice_by_epoch"] = [round(float(r[f"val_{dice}"]), 4) for r in epochs]
        row["train_dice_by_epoch"] = [round(float(r[dice]), 4) for r in epochs]
    return row


def table(rows: list[dict]) -> str:
    """A Markdown table of the rows' main figures."""
    lines = [
        "| bundle | encoder | params | from | epochs (best) | minutes | val Dice "
        "| meningioma / glioma / pituitary |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        types = " / ".join(
            f"{r['val_dice_by_type'].get(t, float('nan')):.3f}" for t in ("meningioma", "glioma", "pituitary")
        )
        minutes = f"{r['train_seconds'] / 60:.0f}" if r["train_seconds"] is not None else "?"
        start = "warm start" if r["initialised_from"] else f"init: {r['encoder_weights']}"
        lines.append(
            f"| {r['name']} | {r['encoder']} | {r['parameters'] / 1e6:.2f} M | {start} | {r['epochs_done']} "
            f"({r['best_epoch']}) | {minutes} | {r['val_dice_mean']:.3f} | {types} |"
        )
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        description="Summarise trained bundles side by side (validation figures from their JSON, "
        "per-epoch Dice from their run's log.csv; minutes and epochs are the last run's, so a warm "
        "start's earlier runs are not counted); reads no data and loads no model."
    )
    parser.add_argument(
        "bundles", nargs="+", metavar="BUNDLE.json", help="bundle JSON files that ml.train wrote"
    )
    parser.add_argument(
        "--runs-dir",
        default="runs",
        help="where each run's log.csv lives, as <runs-dir>/<name>/log.csv (default runs)",
    )
    parser.add_argument("--note", help="what the runs were and how they were made, kept in the JSON")
    parser.add_argument("--json", metavar="OUT", help="write the figures here")
    args = parser.parse_args(argv)
    try:
        rows = [summarise(b, args.runs_dir) for b in args.bundles]
    except (FileNotFoundError, ValueError) as exc:
        parser.error(str(exc))
    print(table(rows))
    if args.json:
        out = {"note": args.note, "bundles": [str(b) for b in args.bundles], "runs": rows}
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
