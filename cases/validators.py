"""What a person may type as a patient's identifier: a pseudonymous code, never what identifies someone.

``patient_identifier_validate`` is the one check, used by every form that takes a typed identifier (the
API's ``patient``, which the upload page posts to). It refuses what looks like a name, a date or a
hospital number, with a message saying why and what to type instead. It cannot prove a code is
pseudonymous (a single surname passes); it catches the usual slips. Identifiers the site makes itself
(``pt-`` pseudonyms, ``anon-`` codes) pass, and imports (Figshare's PIDs) do not come through here.
"""

from __future__ import annotations

import re

from django.core.exceptions import ValidationError

from cases.pseudonyms import PSEUDONYM_PATTERN

_INSTEAD = (
    "Type the pseudonymous code your hospital's pseudonymisation gives this patient instead (such as "
    "BT-0042), or leave the field empty: a DICOM file's patient is linked without it."
)
_OWN_CODES = (PSEUDONYM_PATTERN, re.compile(r"^anon-[0-9a-f]{12}$"))

# Words are split by spaces, commas, underscores, dots and DICOM's "^"; a hyphen or an apostrophe inside
# one keeps it whole, so "Jean-Luc" is one word and "GLIOMA-TRIAL-7" none (it holds digits).
_WORD_SEPARATORS = re.compile(r"[\s,;_.^/]+")
_ALPHABETIC_WORD = re.compile(r"^[^\W\d_]+(?:['\u2019-][^\W\d_]+)*$")

_MONTHS = (
    r"jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|sept?(?:ember)?"
    r"|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?"
)
_DATES = [
    # 1961-02-03, 1961/2/3, 1961.02.03
    re.compile(r"(?<!\d)(?:19|20)\d\d[-/.](?:0?[1-9]|1[0-2])[-/.](?:0?[1-9]|[12]\d|3[01])(?!\d)"),
    # 03/02/1961, 3.2.61, 02-03-61 (day or month first)
    re.compile(r"(?<!\d)(?:0?[1-9]|[12]\d|3[01])[-/.](?:0?[1-9]|[12]\d|3[01])[-/.](?:\d\d){1,2}(?!\d)"),
    # 3 Feb 1961, 03-feb-61, Feb 3, 1961, February 1961: a month's name next to a day or a year
    re.compile(
        rf"(?<!\d)(?:0?[1-9]|[12]\d|3[01]|(?:19|20)\d\d)[\s\-/.,]*(?:{_MONTHS})(?![a-z])"
        rf"|(?<![a-z])(?:{_MONTHS})[\s\-/.,]*(?:0?[1-9]|[12]\d|3[01]|(?:19|20)?\d\d)(?!\d)",
        re.IGNORECASE,
    ),
]
# 7 digits or more in a row (hospital numbers, 19610203), or NHS (943 476 5919) and SSN (123-45-6789)
# groupings.
_LONG_NUMBERS = re.compile(r"\d{7,}|(?<!\d)\d{3}[ -]\d{3}[ -]\d{4}(?!\d)|(?<!\d)\d{3}-\d{2}-\d{4}(?!\d)")


def patient_identifier_problem(value: str) -> str | None:
    """Why ``value`` may identify the patient, in a sentence for the person who typed it; None if fine."""
    value = value.strip()
    if not value or any(pattern.match(value) for pattern in _OWN_CODES):
        return None
    if "^" in value:
        return (
            "The patient identifier contains '^', which separates the parts of a name in DICOM: it looks "
            f"like the patient's name. {_INSTEAD}"
        )
    if any(pattern.search(value) for pattern in _DATES):
        return f"The patient identifier looks like it contains a date (a birth date identifies). {_INSTEAD}"
    if _LONG_NUMBERS.search(value):
        return (
            "The patient identifier contains a long number (7 digits or more, or grouped like an NHS or "
            f"social security number): it looks like a hospital or national number. {_INSTEAD}"
        )
    words = [word for word in _WORD_SEPARATORS.split(value) if _ALPHABETIC_WORD.match(word)]
    if len(words) >= 2:
        return (
            f"The patient identifier looks like a person's name ({len(words)} words of letters). {_INSTEAD}"
        )
    return None


def patient_identifier_validate(value: str) -> None:
    """Django/DRF validator: raise ValidationError with ``patient_identifier_problem``'s message."""
    problem = patient_identifier_problem(value or "")
    if problem is not None:
        raise ValidationError(problem, code="identifying")
