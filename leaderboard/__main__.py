"""``python -m leaderboard RESULTS_DIR -o LEADERBOARD.md [--figures DIR] [--baseline bce]``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from leaderboard.render import build
from leaderboard.schema import SchemaError
from mllb_core.io import write_text_atomic


def main(argv: list[str] | None = None) -> int:
    """Render the leaderboard; exit status 2 with ``path: field: problem`` on an invalid file
    (or ``path: the same run as other_path`` for two files of one run)."""
    ap = argparse.ArgumentParser(prog="python -m leaderboard", description=__doc__)
    ap.add_argument("results", type=Path, help="directory searched recursively for *.json")
    ap.add_argument("-o", "--output", type=Path, required=True, help="markdown file to write")
    ap.add_argument("--figures", type=Path, default=None, help="directory for PNG figures")
    ap.add_argument("--baseline", default="bce", help="loss (or preset) the Δ column compares to")
    ap.add_argument("--skip-invalid", action="store_true",
                    help="list invalid results files under the tables instead of stopping")
    args = ap.parse_args(argv)
    try:
        text = build(args.results, args.baseline, args.skip_invalid, args.figures, args.output)
    except (SchemaError, FileNotFoundError, NotADirectoryError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    write_text_atomic(args.output, text)
    print(f"wrote {args.output}" + (f" and figures in {args.figures}" if args.figures else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
