"""When a run has nothing left to train: rerunning its command then writes the bundle again, and trains
only if the epochs, the patience or the time budget given leave room."""

import json
from types import SimpleNamespace

import pytest

from ml.training.callbacks import budget_spent, run_finished
from ml.training.loop import train
from tests.ml.builders import tiny_segmenter


def _cfg(epochs=40, patience=12, max_minutes=None):
    return SimpleNamespace(epochs=epochs, patience=patience, max_minutes=max_minutes)


@pytest.mark.parametrize(
    ("cfg", "state", "finished"),
    [
        (_cfg(), {}, False),  # a new run
        (_cfg(), {"epochs_done": 10, "stale": 3, "train_seconds": 6000}, False),  # no budget
        (_cfg(epochs=10), {"epochs_done": 10}, True),
        (_cfg(), {"epochs_done": 20, "stale": 12}, True),  # early stopping reached
        # 100 min budget, 10 epochs in 92 min: one more at 9.2 min would overrun it
        (_cfg(max_minutes=100), {"epochs_done": 10, "train_seconds": 92 * 60}, True),
        (_cfg(max_minutes=100), {"epochs_done": 10, "train_seconds": 90 * 60}, False),  # 99 min: room left
        (_cfg(max_minutes=120), {"epochs_done": 10, "train_seconds": 92 * 60}, False),  # a larger budget
    ],
)
def test_a_run_is_finished_by_its_epochs_its_patience_or_its_budget(cfg, state, finished):
    assert run_finished(cfg, state) is finished


def test_the_budget_is_spent_only_with_a_budget_and_an_epoch_to_pace_by():
    assert not budget_spent(_cfg(max_minutes=None), {"epochs_done": 5, "train_seconds": 1e9})
    assert not budget_spent(_cfg(max_minutes=1), {"epochs_done": 0, "train_seconds": 1e9})
    assert budget_spent(_cfg(max_minutes=1), {"epochs_done": 1, "train_seconds": 31})


@pytest.mark.slow
def test_rerunning_a_run_its_budget_stopped_writes_the_bundle_without_training(tmp_path):
    train(tiny_segmenter(tmp_path, "budget", epochs=1), log=lambda *_: None, verbose=0)
    bundle = tmp_path / "out" / "budget.json"
    bundle.unlink()
    messages = []
    # two epochs asked for, but a budget the first epoch already spent
    train(tiny_segmenter(tmp_path, "budget", epochs=2, max_minutes=1e-6), log=messages.append, verbose=0)
    state = json.loads((tmp_path / "runs" / "budget" / "state.json").read_text())
    assert state["epochs_done"] == 1 and not any(m.startswith("epoch 2/2") for m in messages)
    assert len((tmp_path / "runs" / "budget" / "log.csv").read_text().splitlines()) == 2  # header + epoch 1
    assert json.loads(bundle.read_text())["training"]["epochs_done"] == 1
