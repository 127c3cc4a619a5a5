"""Segmentation speed and memory: ms per slice at batch 1 and 16, fp32 and bf16, TensorFlow and
OpenVINO, peak memory.

For every shipped bundle in TUMORSITE_MODELS_DIR (default ./models) and, in the same run, the seed
project's fp32 U-Net (128x128 input, 64 to 512 filters, ~22.7 M parameters, called with
``model.predict`` per slice) as the baseline. Each configuration runs in its own subprocess so that
peak memory (max RSS) is its own.

    python benchmarks/segmentation.py [--models-dir DIR] [--repeats 30] [--runtimes tensorflow openvino]
                                      [--json OUT]

Prints a table; nothing here is a test. Figures depend on the machine: ``--json`` also writes the rows
with the CPU model, its bf16 flags and the core count, so a published figure keeps its machine.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def seed_unet():
    """The seed's baseline U-Net: conv blocks 64-128-256-512, a 512 bottleneck, 3x3 transposed up-convs."""
    import keras  # noqa: PLC0415 (TensorFlow loads in the measuring subprocess only)
    from keras import layers  # noqa: PLC0415 (TensorFlow loads in the measuring subprocess only)

    def block(x, f):
        x = layers.Conv2D(f, 3, padding="same", activation="relu")(x)
        return layers.Conv2D(f, 3, padding="same", activation="relu")(x)

    inputs = keras.Input((128, 128, 1))
    x, skips = inputs, []
    for f in (64, 128, 256, 512):
        x = block(x, f)
        skips.append(x)
        x = layers.MaxPooling2D()(x)
    x = block(x, 512)
    for f, skip in zip((512, 256, 128, 64), reversed(skips), strict=True):
        x = layers.Conv2DTranspose(f, 3, strides=2, padding="same")(x)
        x = block(layers.Concatenate()([x, skip]), f)
    return keras.Model(inputs, layers.Conv2D(1, 1, activation="sigmoid")(x), name="seed_unet")


def _measure(target: str, precision: str, repeats: int, runtime: str = "tensorflow") -> dict:
    """Runs inside the subprocess."""
    sys.path.insert(0, str(ROOT))
    from ml.inference import load_segmenter, set_precision  # noqa: PLC0415 (the repository is on sys.path now)

    rng = np.random.default_rng(0)
    if target == "seed_unet":
        set_precision("fp32")
        model = seed_unet()
        x1 = rng.random((1, 128, 128, 1), dtype=np.float32)
        x16 = rng.random((16, 128, 128, 1), dtype=np.float32)
        model.predict(x1, verbose=0)
        model.predict(x16, verbose=0)

        def run(x):
            return model.predict(x, verbose=0)

        params = model.count_params()
    else:
        seg = load_segmenter(target, precision=precision, runtime=runtime)
        s = seg.input_size
        x1 = rng.random((1, s, s, 1), dtype=np.float32)
        x16 = rng.random((16, s, s, 1), dtype=np.float32)

        def run(x):
            return seg.forward(x)

        run(x1), run(x16)
        params = seg.model.count_params()
    out = {"params": params}
    for name, x, n in (("b1", x1, repeats), ("b16", x16, max(3, repeats // 8))):
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            run(x)
            times.append(time.perf_counter() - t0)
        out[f"ms_per_slice_{name}"] = 1000 * float(np.median(times)) / len(x)
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--models-dir",
        default=os.environ.get("TUMORSITE_MODELS_DIR", str(ROOT / "models")),
        help="the shipped bundles to time (default $TUMORSITE_MODELS_DIR or models/)",
    )
    parser.add_argument(
        "--repeats", type=int, default=30, help="timed calls at batch 1 (batch 16: repeats/8)"
    )
    parser.add_argument(
        "--precisions",
        nargs="+",
        default=["fp32", "bf16"],
        choices=["fp32", "bf16"],
        help="precisions to time (default fp32 bf16)",
    )
    parser.add_argument(
        "--runtimes",
        nargs="+",
        default=["tensorflow"],
        choices=["tensorflow", "openvino"],
        help="runtimes to time the bundles in (default tensorflow; the workers' default is "
        "TUMORSITE_INFERENCE_RUNTIME=auto, OpenVINO on a CPU)",
    )
    parser.add_argument("--json", help="also write the rows and the machine to this JSON file")
    parser.add_argument(
        "--_child", nargs=4, metavar=("TARGET", "PRECISION", "REPEATS", "RUNTIME"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args._child:
        target, precision, repeats, runtime = args._child
        print(json.dumps(_measure(target, precision, int(repeats), runtime)))
        return

    bundles = sorted(p for p in Path(args.models_dir).glob("*.keras") if p.with_suffix(".json").is_file())
    jobs = [("seed_unet (model.predict)", "seed_unet", "fp32", "tensorflow")]
    jobs += [
        (f"{p.stem}", str(p), prec, runtime)
        for p in bundles
        for runtime in args.runtimes
        for prec in args.precisions
    ]
    rows = []
    for label, target, precision, runtime in jobs:
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
        proc = subprocess.run(
            [sys.executable, __file__, "--_child", target, precision, str(args.repeats), runtime],
            capture_output=True,
            text=True,
            env=env,
        )
        if proc.returncode:
            print(f"{label} {precision} {runtime}: failed\n{proc.stderr[-2000:]}", file=sys.stderr)
            continue
        result = {"runtime": runtime, **json.loads(proc.stdout.strip().splitlines()[-1])}
        rows.append((label, precision, result))
        print(f"measured {label} {precision} {runtime}", file=sys.stderr, flush=True)

    base = rows[0][2]["ms_per_slice_b1"] if rows and rows[0][1] == "fp32" and "seed" in rows[0][0] else None
    header = (
        f"{'model':28} {'prec':5} {'runtime':10} {'params':>10} {'ms/slice b1':>12} {'ms/slice b16':>13} "
        f"{'peak MB':>8} {'x seed b1':>9}"
    )
    print(header)
    print("-" * len(header))
    for label, precision, r in rows:
        speedup = f"{base / r['ms_per_slice_b1']:.1f}x" if base else "-"
        print(
            f"{label:28} {precision:5} {r['runtime']:10} {r['params']:>10,} {r['ms_per_slice_b1']:>12.2f} "
            f"{r['ms_per_slice_b16']:>13.2f} {r['peak_rss_mb']:>8.0f} {speedup:>9}"
        )
    if args.json:
        report = {
            "machine": machine(),
            "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "repeats": args.repeats,
            "rows": [
                {
                    "model": label,
                    "precision": precision,
                    **r,
                    "x_seed_b1": base / r["ms_per_slice_b1"] if base else None,
                }
                for label, precision, r in rows
            ],
        }
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.json}", file=sys.stderr)


def machine() -> dict:
    """The CPU the figures belong to: model name, bf16 units (AMX, AVX512-BF16) and core count."""
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    model = next(
        (line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name")),
        "unknown",
    )
    flags = set(
        next((line.split(":", 1)[1].split() for line in cpuinfo.splitlines() if line.startswith("flags")), [])
    )
    return {"cpu": model, "cores": os.cpu_count(), "bf16_units": sorted(flags & {"amx_bf16", "avx512_bf16"})}


if __name__ == "__main__":
    main()
