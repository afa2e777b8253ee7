"""`python -m unittest`, the seed's test command, run by an interpreter that lacks a test
dependency: it must say what to install, not only that pytest failed."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
from pathlib import Path

from support import UNIT_S

ROOT = Path(__file__).resolve().parents[2]
MISSING = "pytest_timeout"  # imported by tests/conftest.py, so pytest cannot even start


def python_without(module: str, folder: Path) -> Path:
    """A virtual environment with every package of this one but ``module``'s (links, no copies)."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True)
    paths = {"base": str(folder), "platbase": str(folder)}
    site = Path(sysconfig.get_paths(vars=paths)["purelib"])
    for entry in Path(sysconfig.get_paths()["purelib"]).iterdir():
        if not entry.name.startswith(module):
            (site / entry.name).symlink_to(entry)
    return folder / "bin" / "python"


def test_python_m_unittest_without_pytest_timeout_names_what_to_install(tmp_path: Path) -> None:
    python = python_without(MISSING, tmp_path / "venv")
    done = subprocess.run(
        [str(python), "-m", "unittest"], cwd=ROOT, capture_output=True, text=True, timeout=60 * UNIT_S
    )
    assert done.returncode != 0, done.stderr
    assert "4 != 0" not in done.stderr, done.stderr
    assert "not installed: pytest-timeout" in done.stderr, done.stderr
    assert "make install" in done.stderr, done.stderr
