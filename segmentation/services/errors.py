"""The two ways a segmentation can go wrong: worth retrying, or not."""


class TransientError(Exception):
    """Worth retrying: the storage or the database was briefly unavailable."""


class SegmentationError(Exception):
    """Permanent: retrying will not help. ``str(error)`` is shown to the clinician."""
