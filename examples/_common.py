"""Shared bits of the example scripts: data-directory option and a friendly exit when data is absent."""

import os
import sys


def add_data_args(parser):
    parser.add_argument("--data-dir", default=None,
                        help="data root holding sst2/, sst5/, imdb/, ptb/ (default: $TINYTT_DATA)")


def missing_data(exc):
    """Print why the data could not be found and exit with status 2."""
    print(f"error: {exc}\n\nThe example needs the dataset files. Point TINYTT_DATA (or --data-dir) at a directory "
          f"laid out like /work/shared/data, e.g.\n  export TINYTT_DATA=/work/shared/data", file=sys.stderr)
    sys.exit(2)


def table(rows, headers):
    cols = [[h] + [str(r[i]) for r in rows] for i, h in enumerate(headers)]
    widths = [max(len(c) for c in col) for col in cols]
    fmt = lambda r: "  ".join(str(v).ljust(w) if i == 0 else str(v).rjust(w)  # noqa: E731
                              for i, (v, w) in enumerate(zip(r, widths)))
    return "\n".join([fmt(headers), "  ".join("-" * w for w in widths)] + [fmt(r) for r in rows])


def data_env_hint():
    return os.environ.get("TINYTT_DATA")
