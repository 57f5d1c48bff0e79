"""The tiny preset, trained once per test session, for every test of what comes after training."""
import os
import subprocess
import sys

import pytest

from kochat import PROJECT_ROOT


def _run_script(script, *args, cwd, stdin=None):
    return subprocess.run([sys.executable, str(PROJECT_ROOT / script), *args], cwd=cwd, capture_output=True,
                          text=True, input=stdin, env={**os.environ, "PYTHONUNBUFFERED": "1"}, timeout=600)


@pytest.fixture(scope="session")
def run_script():
    """run_script("chat_ko.py", "--question", "…", cwd=…): an entry script run as a user runs it."""
    return _run_script


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """(run folder, finished process) of `python finetune_ko.py --preset tiny`, run outside the project."""
    work = tmp_path_factory.mktemp("work")  # not the project folder: paths must not depend on the cwd
    result = _run_script("finetune_ko.py", "--preset", "tiny", cwd=work)
    assert result.returncode == 0, result.stderr[-3000:]
    return work / "outputs" / "tiny", result
