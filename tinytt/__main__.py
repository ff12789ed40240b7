"""``python -m tinytt ...``: the same commands as the ``tinytt`` console script."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
