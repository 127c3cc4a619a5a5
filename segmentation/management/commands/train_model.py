"""Train a segmenter and register it as a model version (thin wrapper over ``ml.train``)."""

from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = (
        "Train a segmenter on data in the shared layout (cases.csv, images/, masks/), split by patient "
        "group; write <name>.keras and <name>.json to the models directory and register the model "
        "version. Re-running the same --name resumes from its last epoch."
    )

    def add_arguments(self, parser):
        from ml.data import AUGMENTATIONS
        from ml.encoders import ENCODERS
        from ml.losses import LOSSES
        from ml.models import ARCHITECTURES

        parser.add_argument("--architecture", required=True, choices=ARCHITECTURES, help="decoder architecture")
        parser.add_argument("--encoder", default="plain", choices=ENCODERS, help="encoder (default: plain)")
        parser.add_argument("--data", default=str(settings.TUMORSITE_DATA),
                            help="dataset folder in the shared layout (default: TUMORSITE_DATA)")
        parser.add_argument("--from-record", action="store_true",
                            help="train on the clinical record instead: every case with an imported or "
                                 "clinician-corrected mask, exported with export_cases to a temporary folder")
        parser.add_argument("--image-size", type=int, default=128, help="square model input, a multiple of 16/32")
        parser.add_argument("--epochs", type=int, default=40, help="maximum epochs (early stopping may end sooner)")
        parser.add_argument("--batch-size", type=int, default=16, help="batch size (default 16)")
        parser.add_argument("--base-filters", type=int, default=16, help="filters of the first stage")
        parser.add_argument("--depth", type=int, default=4,
                            help="downsamplings of the plain encoder (default 4; at 256 px, 5 lets the "
                                 "bottleneck see the whole slice)")
        parser.add_argument("--encoder-weights", default="none",
                            help="'none' (random init), 'imagenet' (downloaded by Keras) or a weights file path")
        parser.add_argument("--name", help="bundle name (default: <architecture>_<encoder>_<size>)")
        parser.add_argument("--output-dir", default=str(settings.TUMORSITE_MODELS_DIR),
                            help="where to write the bundle (default: TUMORSITE_MODELS_DIR)")
        parser.add_argument("--run-dir", help="checkpoints, CSV log and curves (default: runs/<name>)")
        parser.add_argument("--max-minutes", type=float, help="stop after the epoch that would exceed this budget")
        parser.add_argument("--patience", type=int, default=12,
                            help="early stopping: epochs without a validation Dice gain before stopping (default 12)")
        parser.add_argument("--lr-start", type=float, default=1e-3,
                            help="initial learning rate (default 1e-3; lower it to fine-tune a warm start)")
        parser.add_argument("--lr-end", type=float, default=1e-4, help="final learning rate (default 1e-4)")
        parser.add_argument("--warmup-epochs", type=float, default=0.0,
                            help="raise the learning rate linearly from near 0 over this many epochs (fractions "
                                 "allowed), e.g. 1 for a warm start (--init-from); default 0, no warm-up")
        parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"],
                            help="auto: bf16 where the CPU has AMX/AVX512-BF16 or on a GPU, else fp32")
        parser.add_argument("--seed", type=int, default=42, help="split and initialisation seed")
        parser.add_argument("--init-from", help="a .keras model whose same-named, same-shaped layers seed this one "
                                                 "(e.g. a trained U-Net for an Attention U-Net)")
        parser.add_argument("--threads", type=int, help="TensorFlow intra-op threads (default: all cores)")
        parser.add_argument("--limit", type=int, help="use at most N train and N val slices (smoke runs)")
        parser.add_argument("--augmentation", default="standard", choices=list(AUGMENTATIONS),
                            help="training augmentation: none, standard (flip, ±10° rotation, ±10%% scale, "
                                 "brightness and contrast) or strong (±20°, ±20%%, larger intensity changes)")
        parser.add_argument("--dropout", type=float, default=0.0, help="spatial dropout after the bottleneck block (default 0)")
        parser.add_argument("--deep-supervision", action="store_true",
                            help="U-Net++ only: a mask head on every top-row node, each trained with the loss; "
                                 "inference averages them (Zhou et al. 2018)")
        parser.add_argument("--attention-blocks", type=int, default=0,
                            help="transformer blocks (self-attention over the bottleneck's positions) after the "
                                 "bottleneck; each starts as the identity, so a warm start keeps its source's "
                                 "output (default 0)")
        parser.add_argument("--loss", default="bce_dice", choices=list(LOSSES),
                            help="bce_dice (BCE + soft Dice, the default), dice, focal, or lovasz (Lovász hinge, "
                                 "per image: for fine-tuning a bce_dice model at a low learning rate)")
        parser.add_argument("--keep-epochs", action="store_true",
                            help="keep every epoch's model in <run-dir>/epochs/ (for python -m ml.average)")
        parser.add_argument("--distill-from", nargs="+", default=[], metavar="KERAS",
                            help="knowledge distillation: train on a mix of the expert masks and these bundles' "
                                 "mean probabilities, e.g. the three shipped models")
        parser.add_argument("--distill-weight", type=float, default=0.5,
                            help="the teachers' share of each training target with --distill-from (default 0.5)")
        parser.add_argument("--no-register", action="store_true", help="do not register the model version")

    def handle(self, *args, **o):
        if o["from_record"]:
            import tempfile

            from django.core.management import call_command

            with tempfile.TemporaryDirectory(prefix="tumorsite-record-") as tmp:
                call_command("export_cases", tmp, "--no-progress", stdout=self.stdout)
                return self._train(Path(tmp), o)
        return self._train(Path(o["data"]), o)

    def _train(self, data: Path, o: dict):
        from ml.train import TrainConfig, set_threads, train

        if o["threads"]:
            set_threads(o["threads"])

        if not (data / "cases.csv").is_file():
            raise CommandError(f"{data} has no cases.csv: pass --data DIR in the shared layout.")
        try:
            cfg = TrainConfig(
                architecture=o["architecture"], encoder=o["encoder"], data_dir=str(data),
                image_size=o["image_size"], epochs=o["epochs"], batch_size=o["batch_size"],
                base_filters=o["base_filters"], depth=o["depth"], encoder_weights=o["encoder_weights"], name=o["name"],
                output_dir=o["output_dir"], run_dir=o["run_dir"], max_minutes=o["max_minutes"],
                patience=o["patience"], lr_start=o["lr_start"], lr_end=o["lr_end"], warmup_epochs=o["warmup_epochs"],
                precision=o["precision"], seed=o["seed"], limit=o["limit"], init_from=o["init_from"],
                augmentation=o["augmentation"], dropout=o["dropout"], loss=o["loss"],
                keep_epochs=o["keep_epochs"], attention_blocks=o["attention_blocks"],
                deep_supervision=o["deep_supervision"], distill_from=o["distill_from"],
                distill_weight=o["distill_weight"])
            result = train(cfg, log=self.stdout.write, verbose=1 if self.stdout.isatty() else 2)
        except (ValueError, RuntimeError, FileNotFoundError) as exc:
            raise CommandError(str(exc)) from exc
        val = result["metrics"]["val"]
        self.stdout.write(self.style.SUCCESS(
            f"{result['name']}: validation Dice {val['dice_mean']:.4f}, IoU {val['iou_mean']:.4f} "
            f"({val['n']} slices), threshold {result['threshold']}"))
        if not o["no_register"]:
            from segmentation.services import model_versions_sync

            from segmentation.management.commands.sync_models import warn_if_case_base_stale

            model_versions_sync(directory=Path(o["output_dir"]))
            self.stdout.write(f"registered model version {result['name']}")
            warn_if_case_base_stale(self.stdout, self.style)
