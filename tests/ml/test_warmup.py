"""Learning-rate warm-up (``--warmup-epochs``): the rate each training step actually used."""

import keras
import numpy as np
import pytest

from ml.train import TrainConfig, warmup_factor
from ml.training.callbacks import training_callbacks


def test_warmup_factor_rises_linearly_then_stays_at_one():
    assert [warmup_factor(step, 4) for step in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    assert warmup_factor(0, 0) == 1.0  # no warm-up


@pytest.mark.parametrize("warmup", [-0.5, 3.0, 4.0])
def test_train_config_refuses_a_warmup_outside_the_run(warmup):
    with pytest.raises(ValueError, match="warmup_epochs"):
        TrainConfig(architecture="unet", data_dir="unused", epochs=3, warmup_epochs=warmup)


def _rates_per_step(tmp_path, warmup_epochs):
    """Fit a one-layer model 3 epochs of 4 steps with the training callbacks; the rate at each step."""

    cfg = TrainConfig(
        architecture="unet",
        data_dir="unused",
        epochs=3,
        patience=5,
        lr_start=1e-2,
        lr_end=1e-3,
        warmup_epochs=warmup_epochs,
        run_dir=str(tmp_path),
    )
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.Adam(cfg.lr_start), loss="mse")
    rates = []

    class Record(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            rates.append(float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)))

    x = np.random.default_rng(0).random((16, 3), dtype=np.float32)
    model.fit(
        x,
        x[:, :1],
        batch_size=4,
        epochs=cfg.epochs,
        verbose=0,
        shuffle=False,
        callbacks=[*training_callbacks(cfg, tmp_path, {}, lambda msg: None), Record()],
    )
    return np.array(rates)


def test_warmup_ramps_the_scheduled_rate_over_its_steps_then_follows_the_schedule(tmp_path):
    rates = _rates_per_step(tmp_path, warmup_epochs=1.5)  # round(1.5 * 4) = 6 warm-up steps
    epoch_rates = [1e-2, 1e-2 * 0.1**0.5, 1e-3]  # exponential 1e-2 -> 1e-3 over 3 epochs
    expected = (
        [epoch_rates[0] * k / 6 for k in (1, 2, 3, 4)]
        + [epoch_rates[1] * 5 / 6, epoch_rates[1], epoch_rates[1], epoch_rates[1]]
        + [epoch_rates[2]] * 4
    )
    np.testing.assert_allclose(rates, expected, rtol=1e-5)


def test_without_warmup_each_epoch_runs_at_its_scheduled_rate(tmp_path):
    rates = _rates_per_step(tmp_path, warmup_epochs=0)
    np.testing.assert_allclose(rates, np.repeat([1e-2, 1e-2 * 0.1**0.5, 1e-3], 4), rtol=1e-5)
