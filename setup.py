"""Build hook: ship the top-level ``conf/`` tree inside the wheel as the package ``vanseg.conf``.

Everything else about the package is declared in ``pyproject.toml``. The package list lives
here because ``[tool.setuptools.packages.find]`` only finds packages under ``src/``, while the
configuration stays at the repository top level (where train.py, eval.py and predict.py and
the docs expect it) and is mapped into the package at build time.
"""

from setuptools import find_packages, setup

setup(
    packages=[*find_packages("src"), "vanseg.conf"],
    package_dir={"": "src", "vanseg.conf": "conf"},
    package_data={"vanseg.conf": ["*.yaml", "*/*.yaml"]},
    exclude_package_data={"vanseg.conf": ["local/*"]},
)
