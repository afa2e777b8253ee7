"""`python -m unittest`, the seed's test command, run from the repository root: it runs the unit
tests (tests/unit, written for pytest) and passes or fails with them.

The integration tests start real processes and take minutes: `make test` runs them.
"""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
import sys
import tomllib
import unittest
from pathlib import Path

ROOT = Path(__file__).resolve().parent


def required_distributions() -> list[str]:
    """What `make install` installs: this project, its dependencies and its `dev` extra (the
    test tools), by distribution name."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = [project["name"], *project["dependencies"], *project["optional-dependencies"]["dev"]]
    return [re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0] for requirement in requirements]


def missing_distributions() -> list[str]:
    missing = []
    for name in required_distributions():
        try:
            importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            missing.append(name)
    return missing


class UnitTests(unittest.TestCase):
    def test_every_unit_test_passes_under_pytest(self) -> None:
        # Checked first: without one of them pytest stops before any test (a conftest import
        # error, exit code 4), and only its report, not this test's failure, would say why.
        missing = missing_distributions()
        if missing:
            self.fail(
                f"not installed: {', '.join(missing)} (for {sys.executable}). Run `make install`, "
                "then `.venv/bin/python -m unittest`; or, in your own environment, "
                "`pip install -e '.[dev]'`"
            )
        # A child process, so pytest's plugins and imports stay out of this one; its report
        # goes to this terminal.
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/unit"]
        done = subprocess.run(command, cwd=ROOT, check=False)
        self.assertEqual(done.returncode, 0, "a unit test failed: see pytest's report above")


if __name__ == "__main__":
    unittest.main()
