"""Synthetic rating logs for scale tests: `python -m train.synthetic --out DIR --rows N ...`.

Ratings come from a latent-factor model with MovieLens-like statistics:
rating = clip(round(global mean + user bias + item bias + <user, item> + noise), 1, 5),
items drawn with a Zipf-like popularity. Rows are generated and written in
chunks, so memory stays bounded whatever the row count. The output is a
sharded data folder (see `train.streaming`) with vocab files and side files
(`train.side_files`: users.tsv, movies.tsv), ready for `python -m train --data DIR`.
The side features carry some of the latent factors: a user's gender is the
sign of their first factor, their age grows with the second and their
occupation is the largest of the next four; an item has genre k when its
factor k mod 8 is large.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from device_runtime.files import write_atomically
from train import artifacts, side_files, streaming
from train.errors import ConfigError, TrainError

logger = logging.getLogger(__name__)

CHUNK_ROWS = 500_000
MOVIELENS_MEAN = 3.53
LATENT_DIMENSION = 8
OCCUPATIONS = ("artist", "doctor", "engineer", "student")
GENRES = ("Action", "Comedy", "Drama", "Romance", "Thriller", "Horror", "Sci-Fi", "Documentary", "Animation", "War")


@dataclasses.dataclass(frozen=True)
class SyntheticSpec:
    """What to generate."""

    rows: int
    users: int
    items: int
    shards: int = 8
    test_fraction: float = 0.2
    seed: int = 0

    def __post_init__(self):
        for name in ("rows", "users", "items", "shards"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name} must be >= 1, got {getattr(self, name)}")
        if not 0 < self.test_fraction < 1:
            raise ConfigError(f"--test-fraction must be between 0 and 1, got {self.test_fraction}")


def user_id(index) -> str:
    return f"user{index}"


def item_title(index) -> str:
    return f"Item {index} ({1930 + index % 90})"


def generate(spec: SyntheticSpec, out_dir: Path) -> Path:
    """Writes the sharded folder atomically (built beside `out_dir`, then renamed).

    Raises:
        OutputError: `out_dir` exists.
    """
    out_dir = Path(out_dir)
    if out_dir.exists():
        raise artifacts.OutputError(f"{out_dir} exists; choose a new folder for the synthetic data")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = artifacts.make_staging_folder(out_dir)
    try:
        _write(spec, staging)
        os.replace(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out_dir


def _write(spec: SyntheticSpec, folder: Path) -> None:
    rng = np.random.default_rng(spec.seed)
    user_factors = rng.normal(0, 0.35, (spec.users, LATENT_DIMENSION)).astype(np.float32)
    item_factors = rng.normal(0, 0.35, (spec.items, LATENT_DIMENSION)).astype(np.float32)
    user_bias = rng.normal(0, 0.4, spec.users).astype(np.float32)
    item_bias = rng.normal(0, 0.5, spec.items).astype(np.float32)
    popularity = 1.0 / np.arange(1, spec.items + 1) ** 0.8
    popularity /= popularity.sum()

    test_shards = max(1, spec.shards // 4)
    handles = {
        "train": [_open(folder, "train", s, spec.shards) for s in range(spec.shards)],
        "test": [_open(folder, "test", s, test_shards) for s in range(test_shards)],
    }
    started, written = time.perf_counter(), 0
    try:
        while written < spec.rows:
            count = min(CHUNK_ROWS, spec.rows - written)
            users = rng.integers(0, spec.users, count)
            items = rng.choice(spec.items, count, p=popularity)
            raw = (
                MOVIELENS_MEAN
                + user_bias[users]
                + item_bias[items]
                + np.einsum("ij,ij->i", user_factors[users], item_factors[items])
                + rng.normal(0, 0.8, count)
            )
            ratings = np.clip(np.rint(raw), 1, 5).astype(np.int8)
            is_test = rng.random(count) < spec.test_fraction
            for split, mask in (("train", ~is_test), ("test", is_test)):
                lines = [
                    f"{user_id(u)}\t{item_title(i)}\t{r}\n"
                    for u, i, r in zip(users[mask].tolist(), items[mask].tolist(), ratings[mask].tolist())
                ]
                outs = handles[split]
                for shard, out in enumerate(outs):
                    out.writelines(lines[shard :: len(outs)])
            written += count
            seconds = time.perf_counter() - started
            logger.info("generated %s of %s rows (%.0f s)", f"{written:,}", f"{spec.rows:,}", seconds)
    finally:
        for outs in handles.values():
            for out in outs:
                out.close()
    artifacts.write_vocabulary(folder / artifacts.USERS_VOCAB, [user_id(u) for u in range(spec.users)])
    artifacts.write_vocabulary(folder / artifacts.MOVIES_VOCAB, [item_title(i) for i in range(spec.items)])
    _write_side_files(folder, user_factors, item_factors, rng)


def _write_side_files(folder: Path, user_factors: np.ndarray, item_factors: np.ndarray, rng) -> None:
    """users.tsv and movies.tsv whose features follow the latent factors (see the module)."""
    ages = np.clip(np.rint(35 + 30 * user_factors[:, 1] + rng.normal(0, 5, len(user_factors))), 12, 80).astype(int)
    genders = np.where(user_factors[:, 0] > 0, "M", "F")
    occupations = np.array(OCCUPATIONS)[np.argmax(user_factors[:, 2:6], axis=1)]
    zips = rng.integers(0, 100_000, len(user_factors))
    user_lines = [
        f"{user_id(u)}\t{age}\t{gender}\t{occupation}\t{zip_code:05d}\n"
        for u, (age, gender, occupation, zip_code) in enumerate(zip(ages, genders, occupations, zips))
    ]
    write_atomically(folder / side_files.USERS_FILE, side_files.USERS_HEADER + "\n" + "".join(user_lines))
    has_genre = item_factors[:, np.arange(len(GENRES)) % LATENT_DIMENSION] > 0.35
    movie_lines = [
        f"{item_title(i)}\t{'|'.join(g for g, on in zip(GENRES, row) if on)}\n" for i, row in enumerate(has_genre)
    ]
    write_atomically(folder / side_files.MOVIES_FILE, side_files.MOVIES_HEADER + "\n" + "".join(movie_lines))


def _open(folder: Path, split: str, shard: int, shards: int):
    out = open(folder / f"{split}-{shard:05d}-of-{shards:05d}.tsv", "w", encoding="utf-8", newline="")
    out.write(streaming.HEADER + "\n")
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train.synthetic", description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path, help="new folder for the sharded data")
    parser.add_argument("--rows", required=True, type=int, help="ratings to generate (train + test)")
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--shards", type=int, default=8, help="training files (test gets a quarter as many)")
    parser.add_argument("--test-fraction", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    try:
        spec = SyntheticSpec(args.rows, args.users, args.items, args.shards, args.test_fraction, args.seed)
        generate(spec, args.out)
    except TrainError as error:
        print(f"train.synthetic: error: {error}", file=sys.stderr)
        return 2
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
