"""CI's production pass leaves out only the tests that run the same in every mode (tests/conftest.py)."""

from types import SimpleNamespace

import pytest

from tests.conftest import REPO_ROOT, pytest_collection_modifyitems, runs_the_same_in_every_mode


def _item(path: str, *, fixtures=(), markers=()):
    return SimpleNamespace(
        path=REPO_ROOT / path,
        fixturenames=["request", "settings", *fixtures],
        get_closest_marker=lambda name: SimpleNamespace(name=name) if name in markers else None,
    )


@pytest.mark.parametrize(
    ("item", "left_out"),
    [
        (_item("tests/ml/test_losses.py"), True),  # ml/ alone
        (_item("tests/test_docs.py"), True),  # the repository's files
        (_item("tests/test_help_texts.py"), True),
        (_item("tests/ml/test_segmentation_commands.py", markers=["django_db", "slow"]), False),
        (_item("tests/ml/test_region_choice.py", fixtures=["owner", "db"]), False),  # a persona: the db
        (_item("tests/ml/test_shipped_models.py", fixtures=["live_server"]), False),
        (_item("tests/ml/test_type_cv.py", markers=["services"]), False),
        (_item("tests/cases/test_import_cases.py"), False),  # outside: kept even without the db
        (_item("tests/storage/test_media.py"), False),
    ],
)
def test_a_test_is_left_out_only_where_it_runs_the_same_in_every_mode(item, left_out):
    assert runs_the_same_in_every_mode(item) is left_out


def test_the_option_deselects_them_and_reports_them_to_pytest():
    items = [_item("tests/ml/test_losses.py"), _item("tests/cases/test_import_cases.py")]
    reported = []

    def config(option: bool):
        return SimpleNamespace(
            getoption=lambda name: option if name == "--mode-dependent-only" else None,
            hook=SimpleNamespace(pytest_deselected=lambda items: reported.extend(items)),
        )

    everything = list(items)
    pytest_collection_modifyitems(config(False), items)
    assert items == everything and not reported  # without the option: every test
    pytest_collection_modifyitems(config(True), items)
    assert items == everything[1:] and reported == everything[:1]
