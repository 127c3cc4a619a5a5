"""Training speed: ms per optimizer step, fp32 against mixed bf16, for the shipped models' shapes.

Builds each shipped bundle's architecture from its ``spec`` (random weights; nothing is loaded or
written), compiles it with the training loss and Adam, and times ``train_on_batch`` on random data
at the training batch size. Each (model, precision) runs in its own subprocess so that the global
dtype policy and thread settings do not leak between them.

    python benchmarks/training.py [--models-dir DIR] [--steps 8] [--batch-size 16] [--threads N]

Use it to decide ``--precision`` on a new machine: ``auto`` picks bf16 where the CPU has AMX or
AVX512-BF16 (or there is a GPU), and this shows whether that pays off there. Nothing here is a test.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def _measure(spec: dict, precision: str, steps: int, batch_size: int, threads: int) -> dict:
    """Runs inside the subprocess."""
    sys.path.insert(0, str(ROOT))
    # The repository is on sys.path only now, and TensorFlow loads in the measuring subprocess only.
    from ml.training.loop import set_threads  # noqa: PLC0415 (see above)

    if threads:
        set_threads(threads)
    import keras  # noqa: PLC0415 (see above)

    from ml.inference import set_precision  # noqa: PLC0415 (see above)
    from ml.losses import get_loss  # noqa: PLC0415 (see above)
    from ml.models import build_model  # noqa: PLC0415 (see above)

    set_precision(precision)
    spec = dict(spec)
    model = build_model(spec.pop("architecture"), spec.pop("encoder", "plain"), **spec)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=get_loss("bce_dice"))
    rng = np.random.default_rng(0)
    size = spec["input_size"]
    x = rng.random((batch_size, size, size, 1), dtype=np.float32)
    y = (rng.random((batch_size, size, size, 1)) > 0.9).astype(np.float32)
    if spec.get("deep_supervision"):
        y = [y] * len(model.outputs)
    for _ in range(2):  # trace and warm up
        model.train_on_batch(x, y)
    times = []
    for _ in range(steps):
        started = time.perf_counter()
        model.train_on_batch(x, y)
        times.append(time.perf_counter() - started)
    return {"params": int(model.count_params()), "ms_per_step": 1000 * float(np.median(times))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--models-dir",
        default=os.environ.get("TUMORSITE_MODELS_DIR", str(ROOT / "models")),
        help="the shipped bundles whose specs are timed (default $TUMORSITE_MODELS_DIR or models/)",
    )
    parser.add_argument(
        "--steps", type=int, default=8, help="timed steps per configuration (median reported)"
    )
    parser.add_argument("--batch-size", type=int, default=16, help="slices per training step (default 16)")
    parser.add_argument("--threads", type=int, default=0, help="TensorFlow intra-op threads (0: all cores)")
    parser.add_argument("--_child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._child:
        spec, precision = json.loads(args._child)
        print(json.dumps(_measure(spec, precision, args.steps, args.batch_size, args.threads)))
        return

    rows = []
    for meta_path in sorted(Path(args.models_dir).glob("*.json")):
        spec = json.loads(meta_path.read_text()).get("spec")
        if not spec:
            continue  # e.g. ensemble.json
        for precision in ("fp32", "bf16"):
            proc = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--steps",
                    str(args.steps),
                    "--batch-size",
                    str(args.batch_size),
                    "--threads",
                    str(args.threads),
                    "--_child",
                    json.dumps([spec, precision]),
                ],
                capture_output=True,
                text=True,
                env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
            )
            if proc.returncode:
                print(f"{meta_path.stem} {precision}: failed\n{proc.stderr[-2000:]}", file=sys.stderr)
                continue
            rows.append((meta_path.stem, precision, json.loads(proc.stdout.strip().splitlines()[-1])))
            print(f"measured {meta_path.stem} {precision}", file=sys.stderr, flush=True)

    header = f"{'model':18} {'prec':5} {'params':>10} {'ms/step':>9} {'slices/s':>9} {'bf16 speed-up':>14}"
    print(f"batch {args.batch_size}, threads {args.threads or 'all'}")
    print(header)
    print("-" * len(header))
    fp32 = {name: r["ms_per_step"] for name, precision, r in rows if precision == "fp32"}
    for name, precision, r in rows:
        gain = f"{fp32[name] / r['ms_per_step']:.2f}x" if precision == "bf16" and name in fp32 else ""
        print(
            f"{name:18} {precision:5} {r['params']:>10,} {r['ms_per_step']:>9.0f} "
            f"{1000 * args.batch_size / r['ms_per_step']:>9.1f} {gain:>14}"
        )


if __name__ == "__main__":
    main()
