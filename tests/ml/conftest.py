"""Fixtures of the ML tests."""

import keras
import pytest


@pytest.fixture(autouse=True)
def _keras_dtype_policy_restored():
    """Each test starts with the dtype policy the one before found: a run that stops early (a refused
    split, say) leaves ``ml.inference.set_precision``'s global policy behind, e.g. mixed bfloat16 on
    a CPU with AMX, and the next test's models would compute in it."""
    policy = keras.mixed_precision.global_policy()
    yield
    keras.mixed_precision.set_global_policy(policy)
