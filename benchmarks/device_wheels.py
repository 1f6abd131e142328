"""Fetch the wheels that benchmarks/device_run.sh installs on the accelerator machine.

    python -m benchmarks.device_wheels            # -> .whl/ in the checkout, then lists the sizes

Downloads every NAME==VERSION of benchmarks/device_wheels.txt with `pip download --no-deps
--only-binary=:all:` for CPython 3.12 on manylinux x86_64 (the machine's Python), then rewrites
the dm-control wheel without the folders the suite never imports (`SLIM`). Keep `.whl/` out of
git (`echo /.whl/ >> .git/info/exclude`): the device tool carries it when `carry` names it.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
REQUIREMENTS = os.path.join(HERE, "device_wheels.txt")
DEFAULT_DEST = os.path.join(os.path.dirname(HERE), ".whl")
PYTHON_VERSION = "3.12"
# pip matches manylinux_2_N exactly: these cover the wheels of device_wheels.txt.
PLATFORMS = (
    "manylinux_2_28_x86_64",
    "manylinux_2_27_x86_64",
    "manylinux_2_17_x86_64",
    "manylinux2014_x86_64",
    "manylinux1_x86_64",
)
# Wheel name prefix -> paths left out of it. OGBench imports dm_control.mjcf (and, for its viewer,
# dm_control.viewer); the locomotion models, the dog's meshes and the test data are 55 MB of the
# wheel's 56.
SLIM = {
    "dm_control-": (
        "dm_control/locomotion/",
        "dm_control/suite/dog_assets/",
        "dm_control/suite/all_domains.png",
        "dm_control/mujoco/testing/",
        "dm_control/blender/",
        "dm_control/mjcf/test_assets/",
    ),
}


def requirements(path: str = REQUIREMENTS) -> list[str]:
    """The NAME==VERSION lines of `path`, comments and blank lines dropped."""
    with open(path) as f:
        lines = [line.split("#", 1)[0].strip() for line in f]
    wanted = [line for line in lines if line]
    for line in wanted:
        if "==" not in line:
            raise ValueError(f"{path}: {line!r} is not NAME==VERSION (pin every wheel carried)")
    return wanted


def download(requirement: str, dest: str) -> None:
    """`pip download` one pinned wheel for the device's Python and platform into `dest`."""
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps"]
    command += ["--only-binary=:all:", "--python-version", PYTHON_VERSION, "--implementation"]
    command += ["cp", *(arg for p in PLATFORMS for arg in ("--platform", p)), "-d", dest]
    subprocess.run([*command, requirement], check=True)


def slim_wheel(path: str, drop: tuple[str, ...]) -> None:
    """Rewrite the wheel at `path` without the entries under the prefixes `drop`.

    Its RECORD (the installed-files list pip writes out) loses the same entries, so the installed
    package lists only files it has.
    """
    kept = lambda name: not name.startswith(drop)
    fd, tmp = tempfile.mkstemp(suffix=".whl", dir=os.path.dirname(path))
    os.close(fd)
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as out:
        for info in src.infolist():
            if not kept(info.filename):
                continue
            data = src.read(info)
            if info.filename.endswith(".dist-info/RECORD"):
                rows = data.decode().splitlines(keepends=True)
                data = "".join(row for row in rows if kept(row.split(",", 1)[0])).encode()
            out.writestr(info, data)
    os.replace(tmp, path)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dest", default=DEFAULT_DEST, help="download folder (default .whl/)")
    args = parser.parse_args(argv)
    os.makedirs(args.dest, exist_ok=True)
    for requirement in requirements():
        download(requirement, args.dest)
    total = 0
    for name in sorted(os.listdir(args.dest)):
        path = os.path.join(args.dest, name)
        for prefix, drop in SLIM.items():
            if name.startswith(prefix):
                slim_wheel(path, drop)
        size = os.path.getsize(path)
        total += size
        print(f"{size / 2**20:8.2f} MiB  {name}")
    print(f"{total / 2**20:8.2f} MiB  in all, {args.dest}")


if __name__ == "__main__":
    main()
