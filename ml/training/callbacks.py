"""What a run does after each epoch: checkpoint, best weights, early stopping and the time budget."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from ml.training.schedule import schedule_callbacks


def run_finished(cfg, state: dict) -> bool:
    """Whether a run (its ``state.json``) has nothing left to train: every epoch done, early stopping
    reached, or its time budget (``cfg.max_minutes``) spent by the rule the last epoch stops by (another
    epoch at the mean pace would overrun it). Rerunning the command of a finished run then writes its
    bundle again without training; a larger ``--max-minutes`` or ``--epochs`` continues it."""
    if state.get("epochs_done", 0) >= cfg.epochs or state.get("stale", 0) >= cfg.patience:
        return True
    return budget_spent(cfg, state)


def budget_spent(cfg, state: dict) -> bool:
    """Whether another epoch at the run's mean pace so far would overrun ``cfg.max_minutes``."""
    done, spent = state.get("epochs_done", 0), state.get("train_seconds", 0.0)
    return bool(cfg.max_minutes and done and spent + spent / done > cfg.max_minutes * 60)


def training_callbacks(
    cfg, run_dir: Path, state: dict, log, *, monitor: str = "val_dice", before_log: tuple = ()
) -> list:
    """LR schedule, CSV log, and per epoch: checkpoint, best weights by ``monitor``, early stopping and the
    time budget. ``cfg`` needs epochs, lr_start, lr_end, patience, max_minutes and depth (a ``TrainConfig``
    or ``ml.type_classification.ClassifierConfig``); ``state`` is updated in place and written to
    ``<run_dir>/state.json`` every epoch, so a rerun resumes. ``before_log``: callbacks that run after
    each epoch before the CSV log is written, so what they add to the epoch's logs is logged, and their
    time counts against the budget."""
    import keras  # noqa: PLC0415 (TensorFlow loads only when a run starts)

    budget_s = cfg.max_minutes * 60 if cfg.max_minutes else None
    session_start = time.time()
    used_before = state.get("train_seconds", 0.0)

    def time_progress() -> float:
        if not budget_s:
            return 0.0
        # The first epochs' pace predicts the rest: aim to reach lr_end one epoch before the budget ends.
        done = state.get("epochs_done", 0)
        elapsed = used_before + time.time() - session_start
        per_epoch = elapsed / done if done else budget_s
        return min(1.0, elapsed / max(budget_s - per_epoch, 1.0))

    class EpochState(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            if (
                monitor == "val_dice"
            ):  # a deep-supervision model names its last head's Dice, a joint one its mask's
                named = ("val_dice", f"val_mask_x0{cfg.depth}_dice", "val_mask_dice")
                score = float(next((logs[k] for k in named if k in logs), 0.0))
            else:
                score = float(logs.get(monitor, 0.0))
            best_key = f"best_{monitor}"
            state["epochs_done"] = epoch + 1
            if score > state.get(best_key, -1.0):
                state[best_key], state["best_epoch"] = score, epoch + 1
                self.model.save_weights(run_dir / "best.weights.h5")
                state["stale"] = 0
            else:
                state["stale"] = state.get("stale", 0) + 1
            self.model.save(run_dir / "last.keras")
            if getattr(cfg, "keep_epochs", False):
                (run_dir / "epochs").mkdir(exist_ok=True)
                shutil.copyfile(run_dir / "last.keras", run_dir / "epochs" / f"epoch_{epoch + 1:02d}.keras")
            log(
                f"epoch {epoch + 1}/{cfg.epochs}: {monitor}={score:.4f} best={state[best_key]:.4f} "
                f"(epoch {state['best_epoch']})"
            )
            if state["stale"] >= cfg.patience:
                log(f"early stopping: no {monitor} gain for {cfg.patience} epochs")
                self.model.stop_training = True
            elapsed = used_before + time.time() - session_start
            state["train_seconds"] = elapsed
            (run_dir / "state.json").write_text(json.dumps(state, indent=2))
            if budget_spent(cfg, state):
                log(f"time budget of {cfg.max_minutes} min reached: stopping after epoch {epoch + 1}")
                state["stopped_by_time_budget"] = True
                self.model.stop_training = True

    return [
        *schedule_callbacks(cfg, time_progress),
        *before_log,
        keras.callbacks.CSVLogger(str(run_dir / "log.csv"), append=True),
        EpochState(),
    ]
