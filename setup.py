"""Build hook: ship the top-level ``conf/`` tree inside the wheel as the package ``vanseg.conf``.

Everything else about the package is declared in ``pyproject.toml``. The package list lives
here because ``[tool.setuptools.packages.find]`` only finds packages under ``src/``, while the
configuration stays at the repository top level (where train.py, eval.py, predict.py and the
docs expect it) and is mapped into the package at build time. Each config group folder is a
data-only namespace package; ``conf/local/`` (machine-local overrides, git-ignored) is left out.
``vanseg.models`` ships its registry of published weights, ``zoo.yaml`` (`vanseg.models.zoo`).
"""

from setuptools import find_namespace_packages, find_packages, setup

CONF_PACKAGES = [
    "vanseg.conf",
    *(f"vanseg.conf.{name}" for name in find_namespace_packages("conf", exclude=["local*"])),
]

setup(
    packages=[*find_packages("src"), *CONF_PACKAGES],
    package_dir={"": "src", "vanseg.conf": "conf"},
    package_data={"vanseg.models": ["zoo.yaml"], **{name: ["*.yaml"] for name in CONF_PACKAGES}},
)
