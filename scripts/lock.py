"""Write or check ``requirements.lock``: every package of the dev environment, pinned.

    python scripts/lock.py write VENV_PYTHON    # pin what VENV_PYTHON's environment has
    python scripts/lock.py check                # does the lock still fit pyproject.toml?

``make lock`` builds a fresh venv with the newest versions that pyproject.toml allows and runs
``write`` on it; ``make install`` installs with ``pip install -c requirements.lock``. The lock
starts with the SHA-256 of pyproject.toml's requirements, so any edit of them without
``make lock`` is caught by ``check`` (and by tests/test_lock.py).
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = ROOT / "pyproject.toml"
LOCK = ROOT / "requirements.lock"
#: The extras the dev environment installs (the Makefile's EXTRAS).
EXTRAS = ("dev", "onnx", "sweep")
HASH_LINE = re.compile(r"^# pyproject-requirements-sha256: ([0-9a-f]{64})$", re.M)
PIN_LINE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;#]+)\s*$")


def requirements() -> list[Requirement]:
    """The direct requirements of the dev environment: dependencies plus :data:`EXTRAS`."""
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    extras = project.get("optional-dependencies", {})
    return [Requirement(r) for r in project["dependencies"]] + [
        Requirement(r) for extra in EXTRAS for r in extras[extra]
    ]


def requirements_hash() -> str:
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    extras = project.get("optional-dependencies", {})
    spec = {
        "requires-python": project.get("requires-python"),
        "dependencies": project["dependencies"],
        "extras": {extra: extras[extra] for extra in EXTRAS},
    }
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()


def read_pins(text: str) -> dict[str, str]:
    """``canonical name -> version`` of every ``name==version`` line."""
    pins = {}
    for line in text.splitlines():
        match = PIN_LINE.match(line)
        if match:
            pins[canonicalize_name(match[1])] = match[2]
    return pins


def problems(text: str) -> list[str]:
    """Why the lock ``text`` does not fit pyproject.toml (empty when it does)."""
    found = HASH_LINE.search(text)
    if not found or found[1] != requirements_hash():
        return ["pyproject.toml's requirements changed since requirements.lock was written"]
    pins = read_pins(text)
    out = []
    for req in requirements():
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        version = pins.get(canonicalize_name(req.name))
        if version is None:
            out.append(f"{req.name} is required by pyproject.toml but not pinned")
        elif not req.specifier.contains(version, prereleases=True):
            out.append(f"{req.name}=={version} is outside pyproject.toml's range {req}")
    return out


def write(python: str) -> None:
    """Pin every distribution in ``python``'s environment (vanseg itself left out)."""
    frozen = subprocess.run(
        [python, "-m", "pip", "freeze", "--all", "--exclude-editable"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    pins = sorted((line for line in frozen.splitlines() if PIN_LINE.match(line)), key=str.lower)
    header = [
        "# Every package of the dev environment (`make install`), pinned at the versions CI ran.",
        "# Written by `make lock` (scripts/lock.py): the newest versions pyproject.toml allows.",
        f"# pyproject-requirements-sha256: {requirements_hash()}",
    ]
    text = "\n".join(header + pins) + "\n"
    wrong = problems(text)
    if wrong:
        sys.exit("scripts/lock.py: " + "; ".join(wrong))
    LOCK.write_text(text)
    print(f"wrote {LOCK.name}: {len(pins)} packages")


def main(argv: list[str]) -> int:
    if argv[:1] == ["write"] and len(argv) == 2:
        write(argv[1])
        return 0
    if argv == ["check"]:
        wrong = problems(LOCK.read_text())
        for line in wrong:
            print(f"requirements.lock: {line}; run `make lock`", file=sys.stderr)
        return 2 if wrong else 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
