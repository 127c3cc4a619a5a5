#!/usr/bin/env python
"""Django's command-line utility. Embedded mode by default; DJANGO_SETTINGS_MODULE picks another."""

import os
import sys

from django.core.management import execute_from_command_line


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tumorsite.settings.base")
    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
