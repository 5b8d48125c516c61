"""`.ci/run`: CI runs the README's test command verbatim (then ruff), with pytest's 25 slowest tests in its output."""

from __future__ import annotations

import re

from tests._support.cli import REPO

CI = (REPO / ".ci" / "run").read_text()
README = (REPO / "README.md").read_text()
MARK = "# --- README test command (keep identical to the README) ---\n"


def _command() -> str:
    """The command between CI's markers."""
    assert CI.count(MARK) == 1, "one README command block in .ci/run"
    return CI.split(MARK)[1].split("\n# ---")[0].strip()


def test_ci_runs_the_readme_test_command_verbatim():
    command = _command()
    assert command.count("\n") == 0 and command.endswith(".venv/bin/python -m pytest -q -rs"), command
    assert f"```bash\n{command}\n```" in README  # the README quotes the very same line
    assert CI.index(MARK) < CI.index(".venv/bin/ruff check .")  # and ruff after the tests


def test_ci_shows_the_slowest_tests():
    found = re.search(r'^export PYTEST_ADDOPTS="\$\{PYTEST_ADDOPTS:-\} --durations=25"$', CI, re.M)
    assert found and found.start() < CI.index(MARK)  # set before the command runs
