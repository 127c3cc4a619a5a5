import pytest

from recommender.names import edit_distance, find_near_duplicate, is_near_duplicate, normalise


@pytest.mark.parametrize(
    "raw, key",
    [
        ("  Glioblastoma   Multiforme ", "glioblastoma multiforme"),
        ("MÉNINGIOME atypique", "meningiome atypique"),
        ("Pituitary adenoma (macro-adenoma)", "pituitary adenoma macro adenoma"),
        ("Grade-II  glioma!", "grade ii glioma"),
    ],
)
def test_it_normalises_case_whitespace_accents_and_punctuation(raw, key):
    assert normalise(raw) == key


def test_edit_distance_counts_single_edits():
    assert edit_distance("kitten", "sitting") == 3
    assert edit_distance("abc", "abc") == 0
    assert edit_distance("abcdef", "a", limit=2) == 3


@pytest.mark.parametrize(
    "a, b",
    [
        ("glioblastoma multiforme", "glioblastoma multiform"),  # typo
        ("glioblastoma multiforme", "multiforme glioblastoma"),  # word order
        ("meningioma of the convexity", "convexity meningioma"),  # filler words
        ("non small cell", "nonsmall cell"),  # spacing
        ("pituitary macroadenoma", "pituitary macroadenomma"),
    ],
)
def test_near_duplicates_are_recognised(a, b):
    assert is_near_duplicate(a, b)


@pytest.mark.parametrize(
    "a, b",
    [
        ("grade ii glioma", "grade iii glioma"),  # one letter, a different diagnosis
        ("who grade 2 astrocytoma", "who grade 3 astrocytoma"),
        ("glioma", "glioma recurrence"),
        ("meningioma", "melanoma"),
        ("lipoma", "lymphoma"),  # two edits on a short word
        ("tb", "tbc"),  # too short for a typo allowance
    ],
)
def test_different_diagnoses_are_not_merged(a, b):
    assert not is_near_duplicate(a, b)


def test_find_near_duplicate_prefers_the_closest_entry():
    candidates = [("glioblastoma multiforme", 1), ("glioblastoma multiform", 2)]
    assert find_near_duplicate("glioblastoma multiforn", candidates) == 2
    assert find_near_duplicate("ependymoma", candidates) is None
