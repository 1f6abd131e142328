"""Generate an OGBench manipulation dataset locally with OGBench's scripted oracles.

    python -m experiments.make_dataset --env=cube-single-play-v0 --episodes=1000 --seed=0 \
        --out=~/.ogbench/data --workers=2

Writes `{dataset}.npz`, `{dataset}-val.npz` (or shards with --shards) and
`{dataset}-provenance.json`; results trained on these files are labelled "generated". Locomotion
datasets need expert policies and must be downloaded on a connected machine instead.
"""

import argparse
import os
import sys

from experiments import add_helpfull
from trqam_jax.data.errors import DataError
from trqam_jax.data.generate import generate_dataset


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", required=True, help="dataset name, e.g. cube-single-play-v0")
    parser.add_argument("--episodes", type=int, required=True, help="training episodes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True, help="output directory (the data directory)")
    parser.add_argument("--workers", type=int, default=1, help="processes for the rollouts")
    parser.add_argument("--max-episode-steps", type=int, default=1001, help="OGBench: 1001")
    parser.add_argument("--val-episodes", type=int, default=None, help="default episodes // 10")
    parser.add_argument("--shards", type=int, default=None, help="write {name}-000.npz, ...")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    add_helpfull(parser)
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    out = os.path.abspath(os.path.expanduser(args.out))
    try:
        provenance = generate_dataset(
            args.env,
            episodes=args.episodes,
            seed=args.seed,
            out_dir=out,
            workers=args.workers,
            max_episode_steps=args.max_episode_steps,
            val_episodes=args.val_episodes,
            shards=args.shards,
            progress=not args.no_progress,
        )
    except (DataError, ValueError) as err:
        print(f"make_dataset: error: {err}", file=sys.stderr)
        return 2
    rows = sum(f["rows"] for f in provenance["files"])
    names = ", ".join(f["file"] for f in provenance["files"])
    print(f"wrote {names} ({rows} rows, generated data) to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
