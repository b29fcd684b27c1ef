"""`scripts/setup.sh` shares the heavy packages between checkouts, never the project's code.

Two clones set up one after the other must each run their own code: with the project installed
into the shared venv, whichever clone ran setup last would silently run in both.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT

MARKER = "print('clone', {name!r})"


def _clone(src: Path, dest: Path, name: str) -> Path:
    subprocess.run(["git", "clone", "-q", "--no-hardlinks", str(src), str(dest)], check=True)
    # a visible difference in the code each clone runs
    cli = dest / "gatewatch" / "__main__.py"
    cli.write_text(MARKER.format(name=name) + "\n" + cli.read_text())
    return dest


def _setup(clone: Path) -> None:
    proc = subprocess.run(["bash", "scripts/setup.sh"], cwd=clone, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]


@pytest.mark.slow
def test_two_clones_set_up_one_after_the_other_each_run_their_own_code(tmp_path: Path) -> None:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs git and a git checkout")
    a = _clone(ROOT, tmp_path / "a", "a")
    b = _clone(ROOT, tmp_path / "b", "b")
    _setup(a)
    _setup(b)
    for clone, name in ((a, "a"), (b, "b")):
        # the interpreter and the `gatewatch` launcher, from any working directory
        out = subprocess.run([str(clone / ".venv/bin/python"), "-m", "gatewatch", "--help"], cwd=tmp_path,
                             capture_output=True, text=True, check=True).stdout
        assert out.startswith(f"clone {name}\n"), out[:200]
        where = subprocess.run(
            [str(clone / ".venv/bin/python"), "-c", "import edge, server, wire, gatewatch; "
             "print(*(m.__file__ for m in (edge, server, wire, gatewatch)))"],
            cwd=tmp_path, capture_output=True, text=True, check=True,
        ).stdout.split()
        assert all(Path(p).is_relative_to(clone) for p in where), where
        launcher = (clone / ".venv/bin/gatewatch").read_text()
        assert str(clone / ".venv/bin/python") in launcher.splitlines()[0]
