"""Download the official OGBench dataset files (train and val), resumably, with mirrors.

    python -m experiments.fetch_data --env=cube-double-play-v0 [--dataset_dir=DIR]
    python -m experiments.fetch_data --env=antmaze-large-navigate-v0 \\
        --mirrors=https://mirror.example/ogbench,https://other.example/ogbench

Fetches `{dataset}.npz` and `{dataset}-val.npz` from OGBench's server (ogbench.utils.DATASET_URL),
then from each mirror base URL in turn, into the launcher's data directory (default
$OGBENCH_DATA_DIR, else ~/.ogbench/data). Reruns resume partial downloads and keep complete
files; `{dataset}-provenance.json` records where each file came from (data_source "official").
Exit 2 when some file could not be fetched, with what to download by hand and where to put it.
docs/data.md has the details; trqam_jax/data/fetch.py the logic.
"""

import argparse
import re
import sys

from experiments import add_helpfull
from trqam_jax.data.datasets import resolve_data_dir
from trqam_jax.data.errors import DataError
from trqam_jax.data.fetch import DEFAULT_TIMEOUT_S, OFFICIAL_URL, fetch_dataset


def _checksum(text: str) -> tuple[str, str]:
    file, _, digest = text.partition("=")
    if not re.fullmatch(r"[0-9a-fA-F]{64}", digest):
        raise argparse.ArgumentTypeError(f"expected FILE=SHA256 (64 hex digits), got {text!r}")
    return file, digest.lower()


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--env", required=True, help="dataset (cube-double-play-v0) or single-task env name"
    )
    parser.add_argument(
        "--dataset_dir", default=None, help="data directory ($OGBENCH_DATA_DIR, ~/.ogbench/data)"
    )
    parser.add_argument(
        "--mirrors",
        default="",
        help="comma-separated base URLs tried after the official one, in order",
    )
    parser.add_argument(
        "--official_url",
        default=OFFICIAL_URL,
        help="OGBench's base URL (from the installed ogbench); '' skips it",
    )
    parser.add_argument(
        "--sha256",
        type=_checksum,
        action="append",
        default=[],
        metavar="FILE=SHA256",
        help="a known checksum, checked before the file is kept (repeatable; OGBench publishes "
        "none)",
    )
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="stall seconds")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    add_helpfull(parser)
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    sources = [u.strip() for u in [args.official_url, *args.mirrors.split(",")] if u.strip()]
    try:
        record = fetch_dataset(
            args.env,
            args.dataset_dir,
            sources=sources,
            sha256=dict(args.sha256),
            progress=not args.no_progress,
            timeout=args.timeout,
        )
    except (DataError, ValueError) as err:
        print(f"fetch_data: error: {err}", file=sys.stderr)
        return 2
    for entry in record["files"]:
        source = entry["url"] or "already in place"
        print(f"{entry['file']}: {entry['size']} bytes, sha256 {entry['sha256']} ({source})")
    print(f"official {record['dataset_name']} complete in {resolve_data_dir(args.dataset_dir)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
