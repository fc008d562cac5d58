"""bench/gpu_report.sh --cpu runs the whole chain on tiny sizes, so the GPU command cannot rot.

The end-to-end ResNet step is left out here (`--skip scan`): it is the same scan_throughput call as
the null-model pipeline, with another `--architecture`, and a second Ray start would double the
test's time.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

from gpu_report import missing_wheels  # noqa: E402

RATE = r"([\d,]+) (patches|images)/s"


@pytest.mark.timeout(900)
def test_cpu_report_runs_every_step_and_writes_one_table(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHON": sys.executable}
    done = subprocess.run(
        ["bash", str(REPO / "bench" / "gpu_report.sh"), "--cpu", "--work", str(tmp_path), "--skip", "scan"],
        env=env,
        capture_output=True,
        text=True,
        timeout=880,
    )
    failed_logs = "".join(
        f"\n--- {log.name} (tail)\n{log.read_text()[-2500:]}"
        for log in sorted((tmp_path / "logs").glob("*.log"))
        if f"{log.stem}: FAILED" in done.stdout
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:] + failed_logs
    table = (tmp_path / "gpu_report.md").read_text()
    rows = {
        line.split("|")[1].strip(): line for line in table.splitlines() if line.startswith("| ") and "---" not in line
    }
    for name in ("model-only ceiling", "null-model pipeline", "naive peer", "training 96 px", "training 224 px"):
        assert re.search(RATE, rows[name]), f"{name}: {rows.get(name)}"
    assert "end-to-end scan" not in rows
    cells = [c.strip() for c in rows["null-model pipeline"].split("|")]
    assert re.fullmatch(r"\d+\.\d\d", cells[4]) and re.fullmatch(r"\d+\.\d\d", cells[5])  # both ratios
    assert len(list((tmp_path / "slides").glob("*.tif"))) == 2
    assert {p.stem for p in (tmp_path / "logs").glob("*.log")} >= {
        "slides",
        "model_ceiling",
        "scan_null",
        "naive_peer",
        "training",
    }


def test_only_wheels_of_missing_distributions_are_installed(tmp_path: Path) -> None:
    for name in ("numpy-2.0.0-cp312-cp312-manylinux_2_17_x86_64.whl", "no_such_dist_xyz-1.0-py3-none-any.whl"):
        (tmp_path / name).write_bytes(b"")
    assert [w.name for w in missing_wheels(tmp_path)] == ["no_such_dist_xyz-1.0-py3-none-any.whl"]
