"""`python -m unittest`, the seed's test command, run from the repository root: it runs the unit
tests (tests/unit, written for pytest) and passes or fails with them.

The integration tests start real processes and take minutes: `make test` runs them.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import unittest
from pathlib import Path

ROOT = Path(__file__).resolve().parent


class UnitTests(unittest.TestCase):
    def test_every_unit_test_passes_under_pytest(self) -> None:
        if importlib.util.find_spec("pytest") is None:
            self.fail("pytest is not installed: pip install -e '.[dev]'")
        # A child process, so pytest's plugins and imports stay out of this one; its report
        # goes to this terminal.
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/unit"]
        done = subprocess.run(command, cwd=ROOT, check=False)
        self.assertEqual(done.returncode, 0, "a unit test failed: see pytest's report above")


if __name__ == "__main__":
    unittest.main()
