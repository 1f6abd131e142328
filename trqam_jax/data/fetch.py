"""Download the official OGBench dataset files: resumable, checked, with fallback mirrors.

`ogbench.download_datasets` fetches `{DATASET_URL}/{dataset}.npz` and `{dataset}-val.npz`
(`ogbench.utils.DATASET_URL`) in one go, with no resume and no check. `fetch_dataset` fetches the
same two files from the same place, and from mirror base URLs that hold the same file names
when it fails, into the data directory:

  - bytes arrive in `{file}.part`; a rerun resumes it with an HTTP Range request;
  - a file is complete when it has the size the server announced (Content-Length, or the total
    of Content-Range), is a readable npz whose every member passes its zip CRC (which also catches
    a `.part` resumed from a source that serves different bytes, and an HTML error page served
    as the file), and matches the sha256 known for it, if any. OGBench publishes no checksums:
    the sha256 is known only when the user passes it or when an earlier fetch recorded it;
  - then it is renamed into place in one step; a file already in place is never overwritten;
  - `{dataset}-provenance.json` records each file's URL, size and sha256 with data_source
    "official", which the loader reads (`datasets.data_source_of`).
"""

import datetime
import hashlib
import http.client
import os
import re
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from collections.abc import Mapping, Sequence

from ogbench.utils import DATASET_URL
from tqdm import tqdm

from trqam_jax import run_dir
from trqam_jax.data.datasets import (
    EnvSpec,
    _supported_names,
    close_matches,
    generate_command,
    parse_env_name,
    resolve_data_dir,
)
from trqam_jax.data.errors import DataError, UnknownEnvironmentError
from trqam_jax.data.names import dataset_name_of
from trqam_jax.data.provenance import data_source_of, provenance_path, read_provenance
from trqam_jax.versions import versions

OFFICIAL_URL = DATASET_URL
CHUNK_BYTES = 1 << 20
# Smaller files (the val files of small datasets) finish before a bar would tell anything.
PROGRESS_MIN_BYTES = 16 << 20
DEFAULT_TIMEOUT_S = 60.0
_CONTENT_RANGE = re.compile(r"bytes (\d+)-\d+/(\d+|\*)")


class FetchError(DataError):
    """No source delivered a complete copy of some files; the message says what to do by hand."""


class SourceError(Exception):
    """One source answered, but not with the file (wrong range, short, corrupt, other sha256)."""


def dataset_files(dataset_name: str) -> tuple[str, str]:
    """The files OGBench publishes for a dataset, as `ogbench.download_datasets` names them.

    Args:
      dataset_name: str, e.g. `cube-double-play-v0`.
    Returns:
      tuple[str, str]: (`{dataset_name}.npz`, `{dataset_name}-val.npz`).
    """
    return f"{dataset_name}.npz", f"{dataset_name}-val.npz"


def dataset_spec(name: str) -> EnvSpec:
    """Validate a dataset name (`cube-double-play-v0`) or a single-task env name.

    Args:
      name: str, a dataset name or an env name such as `cube-double-play-singletask-task2-v0`.
    Returns:
      EnvSpec: that of the dataset's default single-task environment.
    Raises:
      UnknownEnvironmentError: naming the expected form and the closest dataset names.
    """
    domain, _, version = dataset_name_of(name).rpartition("-")
    try:
        return parse_env_name(f"{domain}-singletask-{version}")
    except UnknownEnvironmentError:
        known = sorted({dataset_name_of(n) for n in _supported_names()})
        raise UnknownEnvironmentError(
            f"unknown OGBench dataset {name!r}: expected a dataset name such as "
            "'cube-double-play-v0' or 'antmaze-large-navigate-v0' (or a single-task environment "
            "name such as 'cube-double-play-singletask-task2-v0')."
            + close_matches(dataset_name_of(name), known)
        ) from None


def file_sha256(path: str) -> str:
    """Hex sha256 of a file's bytes."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def npz_problem(path: str) -> str | None:
    """Why `path` is not a complete npz (zip) file, or None when every member's CRC checks."""
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()  # reads every member, checking its CRC
    except (zipfile.BadZipFile, zlib.error, EOFError, ValueError, NotImplementedError) as err:
        return f"not a readable npz ({type(err).__name__}: {err})"
    return None if bad is None else f"member {bad!r} fails its CRC check"


def fetch_dataset(
    name: str,
    data_dir: str | None = None,
    sources: Sequence[str] = (OFFICIAL_URL,),
    sha256: Mapping[str, str] | None = None,
    progress: bool = True,
    timeout: float = DEFAULT_TIMEOUT_S,
) -> dict:
    """Download a dataset's train and val files into the data directory (see module docstring).

    Args:
      name: str, dataset name (`cube-double-play-v0`) or single-task env name.
      data_dir: str | None, the data directory; default as the launcher's
        (`datasets.resolve_data_dir`: $OGBENCH_DATA_DIR, else ~/.ogbench/data).
      sources: Sequence[str], base URLs tried in order for each file (`{base}/{file}`): OGBench's
        own first, then mirrors.
      sha256: Mapping[str, str] | None, known checksums by file name; they take precedence over
        the ones an earlier fetch recorded.
      progress: bool, show a tqdm bar for large files.
      timeout: float, seconds a connection may stall before the next source is tried.
    Returns:
      dict: the provenance record, also written to `{data_dir}/{dataset}-provenance.json`.
    Raises:
      UnknownEnvironmentError: the name is not an OGBench dataset.
      ValueError: a source is not an http(s) URL.
      FetchError: a file in place fails its check, the directory holds generated data, or no
        source delivered some file (naming each file, the URLs tried and what to do by hand).
    """
    spec = dataset_spec(name)
    for base in sources:
        if urllib.parse.urlsplit(base).scheme not in ("http", "https"):
            raise ValueError(f"source {base!r} is not an http(s) base URL")
    directory = resolve_data_dir(data_dir)
    os.makedirs(directory, exist_ok=True)
    previous = read_provenance(directory, spec.dataset_name)
    if previous is not None and data_source_of(previous) != "official":
        raise FetchError(
            f"{provenance_path(directory, spec.dataset_name)} marks the data of "
            f"{spec.dataset_name} in {directory} as generated (or cannot be read); official files "
            "must not be mixed with generated ones. Fetch into another data directory, or move "
            "the generated files and that JSON away first."
        )
    recorded = {entry["file"]: entry for entry in (previous or {}).get("files", [])}
    known = dict(sha256 or {})
    entries, failures = {}, {}
    for file in dataset_files(spec.dataset_name):
        target = os.path.join(directory, file)
        expected = known.get(file) or recorded.get(file, {}).get("sha256")
        if os.path.exists(target):
            entries[file] = _check_in_place(target, recorded.get(file), expected)
        else:
            attempts = []
            for base in sources:
                url = f"{base.rstrip('/')}/{file}"
                try:
                    entries[file] = _download(url, target, expected, progress, timeout)
                    break
                except (OSError, http.client.HTTPException, SourceError) as err:
                    attempts.append((url, _describe(err)))
            else:
                failures[file] = attempts
        record = _record(spec.dataset_name, sources, entries)
        if entries:
            # Rewritten after every file, so what arrived is recorded even if a later file fails.
            run_dir.write_json(provenance_path(directory, spec.dataset_name), record)
    if failures:
        raise FetchError(_failure_message(spec, directory, failures))
    return record


def _check_in_place(path: str, recorded: dict | None, expected: str | None) -> dict:
    """The provenance entry of a file already in place, after checking it; never overwrites it."""
    file = os.path.basename(path)
    fix = f"Delete {path} (and rerun to download it again) if it should be replaced."
    size = os.path.getsize(path)
    if recorded is not None and recorded.get("size") not in (None, size):
        raise FetchError(
            f"{path} has {size} bytes but {recorded['size']} were fetched from "
            f"{recorded.get('url')}: it changed since. {fix}"
        )
    digest = file_sha256(path)
    if expected is not None:
        if digest != expected:
            raise FetchError(f"{path} has sha256 {digest}, expected {expected}. {fix}")
    elif problem := npz_problem(path):
        raise FetchError(f"{path} is incomplete or corrupt: {problem}. {fix}")
    if recorded is not None and recorded.get("sha256") == digest:
        return recorded
    return {
        "file": file,
        "url": None,  # put there by hand or by ogbench.download_datasets: source unknown
        "size": size,
        "sha256": digest,
        "fetched_at": None,
    }


def _request(url: str, offset: int, timeout: float):
    headers = {"Range": f"bytes={offset}-"} if offset else {}
    return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)


def _download(url: str, target: str, expected: str | None, progress: bool, timeout: float) -> dict:
    """Fetch `url` into `target` through `{target}.part`; returns the provenance entry."""
    part = f"{target}.part"
    offset = os.path.getsize(part) if os.path.exists(part) else 0
    try:
        response = _request(url, offset, timeout)
    except urllib.error.HTTPError as err:
        if err.code != 416 or not offset:
            raise
        # 416: the .part is at least as long as this source's file, so it cannot be resumed here.
        os.remove(part)
        offset = 0
        response = _request(url, 0, timeout)
    with response:
        length = response.headers.get("Content-Length")
        if response.status == 206:
            match = _CONTENT_RANGE.fullmatch(response.headers.get("Content-Range", ""))
            if match is None or int(match[1]) != offset:
                raise SourceError(
                    f"asked for bytes {offset}- and got {response.headers.get('Content-Range')!r}"
                )
            total = int(match[2]) if match[2] != "*" else None
            if total is None and length is not None:
                total = offset + int(length)
        else:
            offset = 0  # a server without Range support sends the whole file: start over
            total = int(length) if length is not None else None
        show = progress and (total is None or total >= PROGRESS_MIN_BYTES)
        with (
            open(part, "ab" if offset else "wb") as out,
            tqdm(
                total=total,
                initial=offset,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=os.path.basename(target),
                disable=not show,
            ) as bar,
        ):
            while chunk := response.read(CHUNK_BYTES):
                out.write(chunk)
                bar.update(len(chunk))
    size = os.path.getsize(part)
    if total is not None and size < total:
        raise SourceError(f"got {size} of {total} bytes (kept in {part}; a rerun resumes it)")
    if total is not None and size > total:
        os.remove(part)
        raise SourceError(f"got {size} bytes, more than the {total} announced (discarded)")
    digest = file_sha256(part)
    problem = (
        f"sha256 {digest}, expected {expected}"
        if expected is not None and digest != expected
        else npz_problem(part)
    )
    if problem:
        os.remove(part)
        raise SourceError(f"{problem} (discarded)")
    os.replace(part, target)
    return {
        "file": os.path.basename(target),
        "url": url,
        "size": size,
        "sha256": digest,
        "fetched_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }


def _describe(err: Exception) -> str:
    if isinstance(err, urllib.error.URLError | SourceError):
        return str(err)
    return f"{type(err).__name__}: {err}"


def _record(dataset_name: str, sources: Sequence[str], entries: dict) -> dict:
    return {
        "data_source": "official",
        "dataset_name": dataset_name,
        "official_url": OFFICIAL_URL,
        "sources": list(sources),
        "checksums": "sha256 computed here after the size and zip CRC checks: OGBench publishes "
        "no checksums",
        "files": [entries[f] for f in dataset_files(dataset_name) if f in entries],
        "versions": {"ogbench": versions()["ogbench"]},
    }


def _failure_message(spec: EnvSpec, directory: str, failures: dict) -> str:
    lines = [f"could not download {len(failures)} file(s) of {spec.dataset_name}:"]
    for file, attempts in failures.items():
        lines.append(f"  {file}, tried:")
        lines += [f"    {url}: {reason}" for url, reason in attempts]
    lines.append(
        "Download by hand on a connected machine, from one of the URLs above (e.g. "
        "`curl -fL -C - -o FILE URL`; `ogbench.download_datasets` fetches the same files), "
        "and put them at:"
    )
    lines += [f"  {os.path.join(directory, file)}" for file in failures]
    lines.append(
        "then rerun this command: it checks files in place and records their provenance. A "
        "partial download stays in FILE.part and the next run resumes it; more base URLs to try "
        "can be given as mirrors."
    )
    if not spec.is_locomotion:
        lines.append(
            "Without the official files, a local substitute (labelled 'generated', never "
            f"official): `{generate_command(spec, directory)}`."
        )
    return "\n".join(lines)
