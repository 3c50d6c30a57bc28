"""Packaging: every Python package of the source tree is declared in pyproject.toml, so a wheel
carries it (a package missing from the list imports from an editable install and fails from a wheel;
.ci/wheel_check is the end-to-end check), and the version is written in one place."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import unroll

ROOT = Path(__file__).resolve().parent.parent


def declared_packages() -> tuple[list[str], dict[str, str]]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    return config["packages"], config["package-dir"]


def source_packages(package_dir: dict[str, str]) -> set[str]:
    """Every folder with an __init__.py under the mapped roots, as its import name; a folder that is
    itself mapped to an import name (runtime/_top -> unroll) counts under that name only."""
    mapped = {(ROOT / folder).resolve() for folder in package_dir.values()}
    found = set()
    for name, folder in package_dir.items():
        root = (ROOT / folder).resolve()
        for init in root.rglob("__init__.py"):
            folder_of = init.parent.resolve()
            if folder_of != root and any(folder_of.is_relative_to(m) for m in mapped if m != root and
                                         m.is_relative_to(root)):
                continue
            if "__pycache__" in folder_of.parts:
                continue
            found.add(".".join((name, *folder_of.relative_to(root).parts)))
    return found


def test_every_source_package_is_declared():
    packages, package_dir = declared_packages()
    missing = source_packages(package_dir) - set(packages)
    assert not missing, f"packages missing from pyproject.toml [tool.setuptools] packages: {sorted(missing)}"


def test_the_version_is_written_once():
    assert re.fullmatch(r"\d+\.\d+\.\d+", unroll.__version__)
    from unroll.compiler import __version__ as compiler_version
    from unroll.compiler.driver import VERSION

    assert VERSION == compiler_version == unroll.__version__
    text = (ROOT / "pyproject.toml").read_text()
    assert 'dynamic = ["version"]' in text and not re.search(r'^version\s*=\s*"', text, re.M)
    literal = re.compile(r'__version__\s*=\s*"|VERSION\s*=\s*"')
    writers = [p for p in (ROOT / "compiler").rglob("*.py") if literal.search(p.read_text())]
    writers += [p for p in (ROOT / "runtime").rglob("*.py") if literal.search(p.read_text())]
    assert [p.relative_to(ROOT).as_posix() for p in writers] == ["runtime/_top/__init__.py"]
