"""The clinician's HTML pages, one module per page group. Every page needs a signed-in user."""
