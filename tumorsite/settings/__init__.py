"""Settings modules: ``base`` (embedded defaults, read from the environment), ``test``, ``production``."""
