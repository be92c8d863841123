"""Provenance in every results header: xfbench's own version and commit, and the working directory's."""

import subprocess
from pathlib import Path

import xfbench
from xfbench.profilers.env import provenance

SOURCE = Path(xfbench.__file__).resolve().parent


def _git(cwd, *args):
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True).stdout.strip()


def test_a_directory_outside_any_checkout_has_no_commit(tmp_path):
    p = provenance(tmp_path)
    assert p["workdir"] == {"path": str(tmp_path.resolve()), "commit": None, "dirty": None}
    assert p["xfbench"]["version"] == xfbench.__version__ and p["xfbench"]["source"] == str(SOURCE)


def test_the_users_repository_and_xfbench_each_get_their_own_commit(tmp_path):
    _git(tmp_path, "init", "-q")
    (tmp_path / "train.py").write_text("print('hi')\n")
    _git(tmp_path, "add", "train.py")
    _git(tmp_path, "-c", "user.name=u", "-c", "user.email=u@x", "commit", "-qm", "user work")
    p = provenance(tmp_path)
    assert p["workdir"]["commit"] == _git(tmp_path, "rev-parse", "HEAD") and p["workdir"]["dirty"] is False
    own = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=SOURCE, capture_output=True, text=True)
    if own.returncode == 0 and Path(own.stdout.strip()).resolve() == SOURCE:  # an xfbench checkout (editable install)
        assert p["xfbench"]["commit"] == _git(SOURCE, "rev-parse", "HEAD") != p["workdir"]["commit"]
    else:  # an installed package never borrows the commit of a repository it happens to sit in
        assert p["xfbench"]["commit"] is None
