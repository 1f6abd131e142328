"""The installable package: metadata agreeing with requirements.txt, an offline editable install
into a fresh venv, and its console scripts run from a directory outside the checkout."""

import os
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from importlib import metadata

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.runs import ROOT

# Tree entries a build never needs (large or local); tests/ and benchmarks/ stay, to check that
# the package leaves them out.
LOCAL_ONLY = {".git", ".venv", "runs", "data", "build", ".pytest_cache", ".ruff_cache"}
PACKAGES = ("trqam_jax", "configs", "experiments")


def pyproject() -> dict:
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        return tomllib.load(f)


def requirements(lines) -> dict[str, Requirement]:
    """{canonical name: Requirement} of requirement strings (comments and blanks skipped)."""
    stripped = (line.split("#")[0].strip() for line in lines)
    parsed = [Requirement(line) for line in stripped if line]
    return {canonicalize_name(r.name): r for r in parsed}


def test_pyproject_and_requirements_agree():
    meta = pyproject()
    extras = meta["project"]["optional-dependencies"]
    runtime = requirements(meta["project"]["dependencies"])
    # Extras other than dev (the loggers of config.log_to) are runtime packages a user opts into.
    optional = requirements([r for extra, reqs in extras.items() if extra != "dev" for r in reqs])
    dev = requirements(extras["dev"])
    backend = requirements(meta["build-system"]["requires"])
    with open(os.path.join(ROOT, "requirements.txt")) as f:
        pinned = requirements(f)

    used = runtime.keys() | optional.keys()
    assert not used & dev.keys(), "a package is both a runtime dependency and a dev tool"
    assert not runtime.keys() & optional.keys(), "a package is both required and optional"
    # Every runtime requirement of requirements.txt is a dependency of pyproject and vice versa.
    assert pinned.keys() - dev.keys() - backend.keys() == used
    assert dev.keys() | backend.keys() <= pinned.keys()
    for name, pin in pinned.items():
        (version,) = (spec.version for spec in pin.specifier if spec.operator == "==")
        for declared in (runtime, optional, dev, backend):
            if name in declared:
                assert declared[name].specifier.contains(version), (name, version)


def require_offline_backend() -> None:
    """Fail with the fix when this environment cannot build the package without downloads."""
    (backend,) = requirements(pyproject()["build-system"]["requires"]).values()
    try:
        version = metadata.version(backend.name)
    except metadata.PackageNotFoundError:
        version = None
    if version is None or not backend.specifier.contains(version):
        pytest.fail(
            f"building offline needs {backend} in this environment (found {version}): "
            "pip install -r requirements.txt"
        )


def outer_import_path() -> list[str]:
    """This interpreter's import path without the directories that hold the checkout's packages
    (the checkout itself, added by `python -m pytest`), so that only the install can supply them.
    """
    holds_checkout = lambda p: any(os.path.isdir(os.path.join(p, pkg)) for pkg in PACKAGES)
    return [p for p in sys.path if p and os.path.isdir(p) and not holds_checkout(p)]


@pytest.fixture(scope="module")
def venv(tmp_path_factory):
    """A fresh venv with this checkout installed editable, offline, without dependencies.

    `--system-site-packages` exposes the base interpreter's packages only; the tests usually run
    in a venv (or one layered on another) whose packages hold the dependencies, the build
    backend and pip, so a .pth file puts this interpreter's import path behind the venv's own.
    """
    require_offline_backend()
    root = tmp_path_factory.mktemp("venv")
    subprocess.run(
        [sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(root)],
        check=True,
    )
    purelib = sysconfig.get_path("purelib", vars={"base": str(root), "platbase": str(root)})
    with open(os.path.join(purelib, "outer-import-path.pth"), "w") as f:
        f.write("\n".join(outer_import_path()) + "\n")
    python = os.path.join(root, "bin", "python")
    pip = [python, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    offline = ["--no-deps", "--no-build-isolation", "--no-index"]
    subprocess.run([*pip, "install", "-q", *offline, "-e", ROOT], check=True, env=clean_env())
    return root


def clean_env() -> dict:
    """The environment without anything that would find the checkout other than the install."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}


def test_console_scripts_run_outside_the_checkout(venv, tmp_path):
    run = lambda *args: subprocess.Popen(
        [os.path.join(venv, "bin", args[0]), *args[1:]],
        cwd=tmp_path,
        env=clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    expected = {
        ("trqam-run", "--help"): (0, "configs/quickstart.py"),
        ("trqam-sweep", "--help"): (0, "--agents"),
        ("trqam-report", "--help"): (0, "PATH"),
        ("trqam-make-dataset", "--help"): (0, "--episodes"),
        ("trqam-fetch-data", "--help"): (0, "--mirrors"),
        # The default config and a `configs/...` path, read from the package, not the cwd.
        ("trqam-run", "--print_config"): (0, "cube-single-play"),
        ("trqam-run", "--config=configs/qam.py:scene-play", "--print_config"): (0, "scene-play"),
    }
    procs = {command: run(*command) for command in expected}  # in parallel: each imports JAX
    for command, (code, text) in expected.items():
        out = procs[command].communicate(timeout=120)[0]
        assert procs[command].returncode == code, (command, out)
        assert text in out, (command, out)
    assert not os.path.exists(os.path.join(tmp_path, "configs"))


def test_wheel_holds_the_packages_and_their_data(tmp_path):
    require_offline_backend()
    source = tmp_path / "src"
    skip = lambda folder, entries: [
        e for e in entries if (folder == ROOT and e in LOCAL_ONLY) or e == "__pycache__"
    ]
    shutil.copytree(ROOT, source, ignore=skip)  # setuptools writes build/ into the source tree
    subprocess.run(
        [sys.executable, "-m", "pip", "--disable-pip-version-check", "wheel", "-q", "--no-deps"]
        + ["--no-build-isolation", "--no-index", "-w", str(tmp_path / "dist"), str(source)],
        check=True,
        env=clean_env(),
    )
    (wheel,) = (tmp_path / "dist").glob("trqam_jax-*.whl")
    members = zipfile.ZipFile(wheel).namelist()
    for path in (
        "trqam_jax/published/trqam_offline_table.csv",
        "trqam_jax/published/qam_release_domains.csv",
        "trqam_jax/published/SOURCES.md",
        "trqam_jax/data/fetch.py",
        "trqam_jax/report/published.py",
        "configs/quickstart.py",
        "experiments/fetch_data.py",
    ):
        assert path in members, path
    assert not [m for m in members if m.startswith(("tests/", "benchmarks/"))]
    entry_points = zipfile.ZipFile(wheel).read(
        next(m for m in members if m.endswith(".dist-info/entry_points.txt"))
    )
    assert b"trqam-run = experiments.run:cli" in entry_points
