from segmentation.testing import *  # noqa: F401,F403  (shared fixtures)
