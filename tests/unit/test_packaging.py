"""The product package stands alone: nothing in lifecycled/ needs the test stack.

devstack/ (the emulators) and tests/ live beside lifecycled/, outside the wheel and the image;
`make package-check` builds the real wheel and checks its files the same way.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import tomllib
from pathlib import Path

from setuptools import find_namespace_packages

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "lifecycled"
# What only the tests, the demos and the benchmarks use (the `dev` extra, and this repo's
# own devstack/ and tests/).
DEV_ONLY = frozenset({"devstack", "moto", "boto3", "pytest", "tests"})


def imported_names(source: str) -> set[str]:
    """The top-level names of the modules `source` imports absolutely."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {alias.name.partition(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.partition(".")[0])
    return found


def test_no_product_module_imports_the_test_stack() -> None:
    offenders = {
        path.relative_to(ROOT).as_posix(): sorted(names)
        for path in sorted(PACKAGE.rglob("*.py"))
        if (names := imported_names(path.read_text()) & DEV_ONLY)
    }
    assert offenders == {}


def test_the_wheel_finds_only_lifecycled() -> None:
    # pyproject's [tool.setuptools.packages.find] (namespace packages included, its default).
    find = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    packages = find_namespace_packages(str(ROOT), **find["packages"]["find"])
    assert "lifecycled" in packages
    assert all(p == "lifecycled" or p.startswith("lifecycled.") for p in packages), packages
    assert not (PACKAGE / "devstack").exists()


def test_every_product_module_imports_without_the_test_stack(tmp_path: Path) -> None:
    """Each lifecycled module imports with devstack, moto, boto3 and pytest unimportable."""
    code = "\n".join(
        [
            "import importlib, pkgutil, sys",
            f"for name in {sorted(DEV_ONLY)!r}:",
            "    sys.modules[name] = None  # import raises ImportError",
            "import lifecycled",
            "for module in pkgutil.walk_packages(lifecycled.__path__, 'lifecycled.'):",
            "    if not module.name.endswith('__main__'):",
            "        importlib.import_module(module.name)",
            "assert lifecycled.__file__.startswith(sys.argv[1]), lifecycled.__file__",
        ]
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", code, str(PACKAGE)],
        env=env,
        cwd=tmp_path,  # not the repo root, where devstack/ would be importable
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
