"""Score shipped segmenters (and their ensemble) on a folder in the shared layout."""

import csv
import itertools
import json
import time
from pathlib import Path

import numpy as np
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from ml.data import load_slices, read_records, split_ids_as_trained
from ml.evaluate import evaluate_masks, group_bootstrap_ci, misses
from ml.inference import ensemble_proba, load_ensemble, load_segmenter, shipped_bundles
from ml.postprocess import binarize

# --cleanup: which connected components of the thresholded map are kept (ml.postprocess), or the model's own.
CLEANUP_CHOICES = {
    "none": {"keep_largest": False},
    "largest": {"keep_largest": True, "keep_by": "area"},
    "peak": {"keep_largest": True, "keep_by": "peak"},
}


class Command(BaseCommand):
    help = (
        "Evaluate segmenters on DIR (cases.csv, images/, masks/ at any resolution; masks must match "
        "their images). Dice and IoU are computed per slice at the image's own resolution and averaged. "
        "Writes {'models': {name: {dice_mean, iou_mean, dice_by_type, n, ms_per_slice, dice_ci95, ...}}, "
        "'paired': {'A - B': {dice_diff, ci95}}}; the 95 % intervals resample whole patient groups."
    )

    def add_arguments(self, parser):
        parser.add_argument("--data", required=True, help="dataset folder in the shared layout")
        parser.add_argument(
            "--models",
            nargs="*",
            default=None,
            help="bundle names in the models directory, or 'ensemble' "
            "(default: every shipped model and the ensemble)",
        )
        parser.add_argument(
            "--models-dir",
            default=str(settings.TUMORSITE_MODELS_DIR),
            help="where the <name>.keras/.json bundles are (default: TUMORSITE_MODELS_DIR)",
        )
        parser.add_argument("--json", required=True, dest="json_out", help="write the results here")
        parser.add_argument(
            "--per-slice",
            metavar="CSV",
            dest="per_slice_out",
            help="also write one row per model and slice (model, id, patient_group, tumour_type, "
            "truth_px, predicted_px, dice, iou), to find the cases a model fails on",
        )
        parser.add_argument(
            "--split",
            choices=["all", "train", "val", "test"],
            default="all",
            help="evaluate only this patient-group split of DIR, as made at training time "
            "(seed and fractions from the first model's metadata)",
        )
        parser.add_argument(
            "--tta",
            choices=["model", "on", "off"],
            default="model",
            help="flip test-time augmentation: each model's own choice (default), or force it",
        )
        parser.add_argument(
            "--zoom",
            choices=["model", "off"],
            default="model",
            help="zoom test-time augmentation (tta_scales): each model's own choice (default), "
            "or the slice at its own scale only",
        )
        parser.add_argument(
            "--cleanup",
            choices=["model", *CLEANUP_CHOICES],
            default="model",
            help="which regions of the thresholded map make the mask: each model's own choice (default), "
            "or every region (none), the largest, or the one holding the highest probability (peak); "
            "compare them on validation splits, never choose on test",
        )
        parser.add_argument(
            "--precision",
            choices=["saved", "fp32", "bf16"],
            default="saved",
            help="run the models in this precision (default: as saved)",
        )
        parser.add_argument(
            "--runtime",
            choices=["tensorflow", "openvino", "auto"],
            default="tensorflow",
            help="what runs the models (default tensorflow, as the published figures were made; the "
            "workers' default is TUMORSITE_INFERENCE_RUNTIME=auto, OpenVINO on a CPU)",
        )
        parser.add_argument("--limit", type=int, help="evaluate at most N slices")

    def handle(self, *args, **o):

        data, models_dir = Path(o["data"]), Path(o["models_dir"])
        try:
            records = read_records(data)
        except FileNotFoundError as exc:
            raise CommandError(str(exc)) from exc
        bundles = {p.stem: p for p in shipped_bundles(models_dir)}
        if not bundles:
            raise CommandError(f"No model bundles (<name>.keras + <name>.json) in {models_dir}.")
        wanted = o["models"] or [*bundles, "ensemble"]
        unknown = [n for n in wanted if n not in bundles and n != "ensemble"]
        if unknown:
            raise CommandError(
                f"Unknown model(s) {', '.join(unknown)}; shipped: {', '.join(bundles)}, ensemble."
            )

        tta = {"model": None, "on": True, "off": False}[o["tta"]]
        scales = None if o["zoom"] == "model" else (1.0,)
        precision = None if o["precision"] == "saved" else o["precision"]
        segmenters = {
            name: load_segmenter(path, precision=precision, runtime=o["runtime"])
            for name, path in bundles.items()
        }
        ids = [r.id for r in records]
        if o["split"] != "all":
            # The split of the models scored (the ensemble's: all of them); they must share it, or one of
            # them would be scored on slices it trained on (cross-validation folds, say).
            scored = segmenters if "ensemble" in wanted else {n: segmenters[n] for n in wanted}
            by_model = {
                name: split_ids_as_trained(
                    records, seg.metadata.get("training", {}).get("split", {}), o["split"]
                )
                for name, seg in scored.items()
            }
            ids = next(iter(by_model.values()))
            differ = sorted(name for name, theirs in by_model.items() if theirs != ids)
            if differ:
                raise CommandError(
                    f"{', '.join(differ)} and {next(iter(by_model))} were trained on different splits "
                    f"(cross-validation folds, say), so no one {o['split']} split suits them all: score "
                    "them one at a time with --models."
                )
        if o["limit"]:
            ids = ids[: o["limit"]]
        slices = load_slices(data, ids)
        self.stdout.write(f"{len(slices)} slices from {data} (split: {o['split']})")

        results, per_slice, probs, rows = {}, {}, {}, {}
        for name in wanted:
            model = (
                load_ensemble(models_dir, list(segmenters.values()))
                if name == "ensemble"
                else segmenters[name]
            )
            members = model.members if name == "ensemble" else [model]
            stems = list(segmenters) if name == "ensemble" else [name]  # the members' bundle names
            # The ensemble's maps are the mean of its members' maps with the same TTA, so when every member
            # has just been scored, they are reused instead of being predicted a second time.
            reuse = (
                name == "ensemble"
                and all(m in probs for m in stems)
                and (tta is not None or model.tta is None)
            )
            if not reuse:
                model.segment(
                    slices.images[:1], tta=tta, scales=scales
                )  # warm-up: trace the tf.function once
            predict = self._predictor(
                model,
                stems,
                probs,
                reuse=reuse,
                keep=name != "ensemble" and "ensemble" in wanted,
                tta=tta,
                scales=scales,
                cleanup=CLEANUP_CHOICES.get(o["cleanup"]),
            )
            with tqdm(total=len(slices), desc=name, unit="slice", disable=None) as bar:
                started = time.perf_counter()
                res = evaluate_masks(predict, slices, progress=bar.update)
            if reuse:  # the whole call's cost: the members' predictions and the averaging
                res["ms_per_slice"] += sum(results[m]["ms_per_slice"] for m in stems)
            res["wall_seconds"] = round(time.perf_counter() - started, 2)
            res["tta_scales"] = {m.name: list(scales or m.tta_scales) for m in members}
            per_slice[name] = np.array(res.pop("dice_per_slice"))
            predicted_px, overlap_px = res.pop("predicted_px_per_slice"), res.pop("overlap_px_per_slice")
            rows[name] = zip(res.pop("iou_per_slice"), predicted_px, per_slice[name], strict=True)
            results[name] = res
            by_type = ", ".join(f"{t} {d:.4f}" for t, d in res["dice_by_type"].items())
            lo, hi = res["dice_ci95"]
            self.stdout.write(
                f"{name}: Dice {res['dice_mean']:.4f} (95% CI {lo:.3f}-{hi:.3f}, "
                f"{res['n_patient_groups']} patient groups) IoU {res['iou_mean']:.4f} "
                f"({by_type}); {res['ms_per_slice']:.1f} ms/slice"
            )
            missed = misses(
                per_slice[name],
                [r.tumour_type for r in slices.records],
                [r.patient_group for r in slices.records],
                predicted_px=predicted_px,
                overlap_px=overlap_px,
            )
            kinds = ", ".join(f"{t} {n}" for t, n in missed["by_type"].items()) or "none"
            how = ", ".join(f"{kind} {n}" for kind, n in missed["how"].items())
            self.stdout.write(
                f"  Dice < {missed['below']}: {missed['n']} of {missed['of']} slices ({kinds}; {how}) from "
                f"{missed['patient_groups']} patient groups; the others' mean Dice "
                f"{missed['dice_mean_of_the_rest']:.4f}"
            )
            res["misses"] = missed
        groups = [r.patient_group for r in slices.records]
        paired = {}
        for a, b in itertools.combinations(wanted, 2):
            diff = per_slice[a] - per_slice[b]
            lo, hi = group_bootstrap_ci(diff, groups)
            paired[f"{a} - {b}"] = {"dice_diff": float(diff.mean()), "ci95": [lo, hi]}
            self.stdout.write(f"Dice {a} - {b}: {diff.mean():+.4f} (95% CI {lo:+.3f} to {hi:+.3f})")
        out = {
            "models": results,
            "paired": paired,
            "data": str(data),
            "split": o["split"],
            "n": len(slices),
            "tta": o["tta"],
            "zoom": o["zoom"],
            "cleanup": o["cleanup"],
            "runtime": next(iter(segmenters.values())).runtime,
        }
        Path(o["json_out"]).parent.mkdir(parents=True, exist_ok=True)
        Path(o["json_out"]).write_text(json.dumps(out, indent=2) + "\n")
        self.stdout.write(self.style.SUCCESS(f"wrote {o['json_out']}"))
        if o["per_slice_out"]:
            self._write_per_slice(Path(o["per_slice_out"]), slices, rows)
            self.stdout.write(self.style.SUCCESS(f"wrote {o['per_slice_out']}"))

    @staticmethod
    def _write_per_slice(path: Path, slices, rows: dict) -> None:

        truth_px = [int(np.count_nonzero(m)) for m in slices.masks]
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(
                ["model", "id", "patient_group", "tumour_type", "truth_px", "predicted_px", "dice", "iou"]
            )
            for name, scores in rows.items():
                for record, truth, (iou, predicted, dice) in zip(
                    slices.records, truth_px, scores, strict=True
                ):
                    writer.writerow(
                        [
                            name,
                            record.id,
                            record.patient_group,
                            record.tumour_type or "",
                            truth,
                            predicted,
                            f"{dice:.6f}",
                            f"{iou:.6f}",
                        ]
                    )

    @staticmethod
    def _predictor(model, stems, probs: dict, *, reuse: bool, keep: bool, tta, scales, cleanup=None):
        """images -> masks for ``evaluate_masks``, which asks for the slices in order. ``keep`` stores a
        model's maps in ``probs`` (under its bundle name) for the ensemble; ``reuse`` averages the stored
        maps of the bundles ``stems``. ``cleanup`` (``binarize``'s keywords) replaces the model's own."""

        def to_mask(prob):
            if cleanup is None:
                return model.binarize(prob)
            return binarize(prob, model.threshold, **{**model.postprocess, **cleanup})

        done = [0]

        def predict(images):
            start, done[0] = done[0], done[0] + len(images)
            if reuse:
                maps = [ensemble_proba([probs[m][i] for m in stems]) for i in range(start, done[0])]
            else:
                maps = model.predict_proba(images, tta=tta, scales=scales)
                if keep:
                    probs.setdefault(stems[0], []).extend(maps)
            return [to_mask(p) for p in maps]

        return predict
