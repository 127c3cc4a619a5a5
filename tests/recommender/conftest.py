from segmentation.testing import *  # noqa: F403  (shared fixtures)
