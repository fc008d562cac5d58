"""install.sh on a machine without Node.js: it installs Debian's nodejs and npm when it may (root,
apt-get), else it stops at once with one line saying what to install.

Only `install.sh --check-node` runs here, with PATH limited to a folder of fakes: `id` says who
the user is, `apt-get` records its arguments, `node`/`npm` are there or not. No pip, no real apt.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from tests.conftest import REPO_ROOT

BASH = shutil.which("bash") or "/bin/bash"


def _fake(folder: Path, name: str, body: str) -> None:
    path = folder / name
    path.write_text(f"#!{BASH}\n{body}\n")
    path.chmod(0o755)


def _fake_bin(tmp_path: Path, uid: int, apt_get: bool = False, node: bool = False) -> Path:
    """A PATH folder with `dirname` (install.sh's first command), an `id` of user `uid`, and
    optionally a recording `apt-get` and present `node` and `npm`."""
    folder = tmp_path / "bin"
    folder.mkdir()
    dirname = shutil.which("dirname")
    assert dirname is not None
    (folder / "dirname").symlink_to(dirname)
    _fake(folder, "id", f'[ "$1" = -u ] && echo {uid}')
    if apt_get:
        _fake(folder, "apt-get", f'echo "$@" >> {tmp_path / "apt-get.log"}')
    if node:
        _fake(folder, "node", "exit 0")
        _fake(folder, "npm", "exit 0")
    return folder


def _check_node(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [BASH, str(REPO_ROOT / "install.sh"), "--check-node"],
        env={"PATH": str(path)},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_without_node_and_leave_to_install_it_one_line_says_what_to_install(tmp_path: Path) -> None:
    for uid, apt_get in ((1000, True), (0, False)):  # not root; root without apt-get
        case = tmp_path / f"uid{uid}"
        case.mkdir()
        proc = _check_node(_fake_bin(case, uid, apt_get=apt_get))
        assert proc.returncode != 0
        assert proc.stdout == ""
        lines = proc.stderr.splitlines()
        assert len(lines) == 1, proc.stderr
        assert lines[0].startswith("install.sh: ") and "nodejs npm" in lines[0]
        assert not (case / "apt-get.log").exists()


def test_as_root_with_apt_get_nodejs_and_npm_are_installed(tmp_path: Path) -> None:
    proc = _check_node(_fake_bin(tmp_path, 0, apt_get=True))
    assert proc.returncode == 0, proc.stderr
    calls = (tmp_path / "apt-get.log").read_text().splitlines()
    assert calls == ["update -q", "install -y -q nodejs npm"]


def test_with_node_and_npm_nothing_is_installed(tmp_path: Path) -> None:
    proc = _check_node(_fake_bin(tmp_path, 0, apt_get=True, node=True))
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert not (tmp_path / "apt-get.log").exists()


def test_the_node_check_runs_before_the_python_install() -> None:
    lines = [line.strip() for line in (REPO_ROOT / "install.sh").read_text().splitlines()]
    assert lines.index("ensure_node") < next(i for i, line in enumerate(lines) if "pip install" in line)
