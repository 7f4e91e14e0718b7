"""``python -m leaderboard RESULTS_DIR [-o LEADERBOARD.md] [--html site/index.html]
[--figures DIR] [--baseline bce]``: the markdown leaderboard, the web page, or both."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from leaderboard.render import build
from leaderboard.schema import SchemaError
from mllb_core.io import write_text_atomic


class _MissingExtraError(Exception):
    """The web page's libraries (the ``web`` extra) are not installed."""


def _build_site(root: Path, baseline: str, skip_invalid: bool) -> str:
    # plotly, itables and pandas are an optional extra: only --html needs them
    try:
        import itables  # noqa: F401
        import pandas  # noqa: F401
        import plotly  # noqa: F401
    except ModuleNotFoundError as exc:
        raise _MissingExtraError(f"--html needs {exc.name}: pip install -e '.[web]'") from exc
    from leaderboard.site import build_site

    return build_site(root, baseline, skip_invalid)


def main(argv: list[str] | None = None) -> int:
    """Render the leaderboard; exit status 2 with ``path: field: problem`` on an invalid file
    (or ``path: the same run as other_path`` for two files of one run)."""
    ap = argparse.ArgumentParser(prog="python -m leaderboard", description=__doc__)
    ap.add_argument("results", type=Path, help="directory searched recursively for *.json")
    ap.add_argument("-o", "--output", type=Path, default=None, help="markdown file to write")
    ap.add_argument("--html", type=Path, default=None,
                    help="self-contained web page to write (no server or network needed)")
    ap.add_argument("--figures", type=Path, default=None, help="directory for PNG figures")
    ap.add_argument("--baseline", default="bce", help="loss (or preset) the Δ column compares to")
    ap.add_argument("--skip-invalid", action="store_true",
                    help="list invalid results files under the tables instead of stopping")
    args = ap.parse_args(argv)
    if args.output is None and args.html is None:
        print("error: nothing to write: give -o LEADERBOARD.md, --html PAGE.html or both",
              file=sys.stderr)
        return 2
    if args.figures is not None and args.output is None:
        print("error: --figures needs -o (the figures are linked from the markdown)",
              file=sys.stderr)
        return 2
    try:
        text = page = None
        if args.output is not None:
            text = build(args.results, args.baseline, args.skip_invalid, args.figures,
                         args.output)
        if args.html is not None:
            page = _build_site(args.results, args.baseline, args.skip_invalid)
    except (SchemaError, FileNotFoundError, NotADirectoryError, _MissingExtraError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    # the markdown and the page are both built before either is written
    if text is not None:
        write_text_atomic(args.output, text)
        print(f"wrote {args.output}" + (f" and figures in {args.figures}" if args.figures
                                        else ""))
    if page is not None:
        write_text_atomic(args.html, page)
        print(f"wrote {args.html}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
