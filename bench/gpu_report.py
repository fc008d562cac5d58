"""The GPU run as one command: every throughput figure of the scanner side by side, one table.

    bash bench/gpu_report.sh                 # on a GPU machine, under 8 minutes
    bash bench/gpu_report.sh --cpu           # tiny sizes on the CPU (what tests/test_gpu_report.py runs)

On a machine that lacks the project's packages it first installs, from the wheel kit `.devkit/`
(made by ../shared/tools/gpu-kit.sh), the wheels whose distributions are missing, into a folder
put on PYTHONPATH, and starts itself again. Then, in one process tree (each bench a child
process, its output kept under the work folder's logs/):

1. writes its slides with bench/camelyon_slide.py (pre-encoded texture tiles, Pillow only);
2. the model-only ceiling: bench/model_ceiling.py (ResNet50, 96 px, no TTA; eager, compiled);
3. the end-to-end scan: bench/scan_throughput.py (ResNet50, stride 32; eager, compiled);
4. the null-model pipeline: bench/scan_throughput.py --architecture null;
5. a naive peer: a torch DataLoader (15 workers), one read_region per patch, the same slides and
   tissue cells, the same scoring module, bf16 and channels_last on CUDA;
6. training throughput: bench/train_synthetic.py throughput at 96 and 224 px.

It writes one markdown table (patches or images per second, each rate over the model-only
ceiling of its mode, the scans over the naive peer) to the work folder and prints it. A step that
fails is a row saying so, and the others go on. `--cpu` uses tiny-cnn, small slides and eager
mode only, so the whole chain runs on a laptop in about a minute.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench"
KIT_SITE = Path("/tmp/pcam-scan-kit-site")
KIT_DONE_ENV = "PCAM_SCAN_GPU_REPORT_KIT"


# ---------------------------------------------------------------- the wheel kit


def missing_wheels(kit: Path) -> list[Path]:
    """Wheels of the kit whose distribution this Python does not have (any version)."""
    missing = []
    for wheel in sorted(kit.glob("*.whl")):
        distribution = wheel.name.split("-")[0]
        try:
            importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError:
            missing.append(wheel)
    return missing


def install_kit_and_restart(kit: Path) -> None:
    """Install what the machine lacks from `kit` (offline, no dependency resolution), then exec again."""
    if os.environ.get(KIT_DONE_ENV) or not kit.is_dir():
        return
    wheels = missing_wheels(kit)
    if wheels:
        print(
            f"installing {len(wheels)} wheels from {kit}: {', '.join(w.name.split('-')[0] for w in wheels)}", flush=True
        )
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "-q",
                "--no-index",
                "--no-deps",
                "--no-compile",
                "--target",
                str(KIT_SITE),
                *map(str, wheels),
            ],
        )
        if done.returncode != 0:  # e.g. a kit built for another Python: go on with what is installed
            print(
                f"gpu_report: the kit at {kit} did not install (pip exit {done.returncode}); going on without it",
                flush=True,
            )
            return
    paths = [str(KIT_SITE), str(REPO), os.environ.get("PYTHONPATH", "")]
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    os.environ[KIT_DONE_ENV] = "1"
    os.execv(sys.executable, [sys.executable, *sys.argv])


# ---------------------------------------------------------------- steps and rows


@dataclass
class Row:
    """One line of the report: what ran, its rate, and the unit; `note` for failures and context."""

    name: str
    rate: float | None
    unit: str
    mode: str = "-"
    note: str = ""


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)

    def rate(self, name: str, mode: str) -> float | None:
        return next((r.rate for r in self.rows if r.name == name and r.mode == mode and r.rate), None)

    def markdown(self, title: str) -> str:
        lines = [
            f"### {title}",
            "",
            "| what | mode | rate | / model-only ceiling | / naive peer | note |",
            "|---|---|---|---|---|---|",
        ]
        naive = self.rate("naive peer", "eager")
        for row in self.rows:
            ceiling = self.rate("model-only ceiling", row.mode)
            over_ceiling = _ratio(row.rate, ceiling) if row.unit == "patches/s" else "-"
            over_naive = _ratio(row.rate, naive) if row.unit == "patches/s" and row.name != "naive peer" else "-"
            rate = f"{row.rate:,.0f} {row.unit}" if row.rate is not None else "failed"
            lines.append(f"| {row.name} | {row.mode} | {rate} | {over_ceiling} | {over_naive} | {row.note} |")
        return "\n".join(lines)


def _ratio(value: float | None, reference: float | None) -> str:
    return f"{value / reference:.2f}" if value and reference else "-"


def _number(text: str) -> float:
    return float(text.replace(",", ""))


class Runner:
    """Runs bench scripts as child processes, logs each one, and times the whole report."""

    def __init__(self, work: Path, env: dict[str, str]) -> None:
        self.work, self.env = work, env
        self.logs = work / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.started = time.perf_counter()

    def bench(self, name: str, script: str, *args: str, timeout_s: float = 600) -> str | None:
        """The output of `python bench/<script> args`, or None when it failed (log kept either way)."""
        command = [sys.executable, str(BENCH / script), *args]
        step_started = time.perf_counter()
        try:
            done = subprocess.run(command, cwd=REPO, env=self.env, capture_output=True, text=True, timeout=timeout_s)
            output, ok = done.stdout + done.stderr, done.returncode == 0
        except subprocess.TimeoutExpired as err:
            # what it printed before the kill; bytes even with text=True, as subprocess documents
            partial = b"".join(p if isinstance(p, bytes) else p.encode() for p in (err.stdout, err.stderr) if p)
            output, ok = f"{partial.decode(errors='replace')}\ntimed out after {timeout_s:.0f} s", False
        (self.logs / f"{name}.log").write_text(" ".join(command) + "\n\n" + output)
        print(
            f"[{time.perf_counter() - self.started:6.1f} s] {name}: {'ok' if ok else 'FAILED'} "
            f"in {time.perf_counter() - step_started:.1f} s",
            flush=True,
        )
        return output if ok else None


# ---------------------------------------------------------------- parsers of the benches' output

_CEILING_ROW = re.compile(r"^\|\s*(\d+)\s*\|\s*(eager|compiled)\s*\|\s*no\s*\|[^|]*\|\s*([\d,.]+)\s*\|", re.M)
_E2E = re.compile(r"^\| end-to-end patches/s \| ([\d,]+(?:\.\d+)?) \|", re.M)
_TRAIN = re.compile(r"(\d+) px on .*?: ([\d,.]+) train images/s")


def ceiling_rows(output: str | None, modes: list[str]) -> list[Row]:
    found = {m.group(2): _number(m.group(3)) for m in _CEILING_ROW.finditer(output or "")}
    return [Row("model-only ceiling", found.get(mode), "patches/s", mode, "bench/model_ceiling.py") for mode in modes]


def scan_row(name: str, mode: str, output: str | None, note: str) -> Row:
    match = _E2E.search(output or "")
    return Row(
        name, _number(match.group(1)) if match else None, "patches/s", mode, note if match else f"{note}; see logs"
    )


def training_rows(output: str | None, sizes: list[int], note: str) -> list[Row]:
    found = {int(m.group(1)): _number(m.group(2)) for m in _TRAIN.finditer(output or "")}
    return [Row(f"training {px} px", found.get(px), "images/s", "-", note) for px in sizes]


# ---------------------------------------------------------------- configuration


@dataclass(frozen=True)
class Sizes:
    """Everything that differs between the GPU run and the `--cpu` smoke run."""

    device: str
    architecture: str
    modes: tuple[str, ...]
    slides: int
    slide_px: tuple[int, int]
    tissue_cells: int
    texture_px: int
    batch_size: int
    ceiling_batches: int
    naive_workers: int
    naive_patches: int
    train_batches: int
    train_batch_size: int | None
    train_sizes: tuple[int, ...] = (96, 224)


GPU = Sizes(
    "cuda",
    "resnet50-fastai-head",
    ("eager", "compiled"),
    slides=6,
    slide_px=(50_000, 100_000),
    tissue_cells=90_000,
    texture_px=2048,
    batch_size=512,
    ceiling_batches=50,
    naive_workers=15,
    naive_patches=120_000,
    train_batches=40,
    train_batch_size=None,
)
CPU = Sizes(
    "cpu",
    "tiny-cnn",
    ("eager",),
    slides=2,
    slide_px=(4608, 4608),
    tissue_cells=150,
    texture_px=512,
    batch_size=64,
    ceiling_batches=2,
    naive_workers=2,
    naive_patches=256,
    train_batches=2,
    train_batch_size=16,
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cpu", action="store_true", help="tiny sizes on the CPU (tiny-cnn, eager only)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/pcam-scan-gpu-report"), help="slides, logs, report")
    parser.add_argument("--kit", type=Path, default=REPO / ".devkit", help="wheel kit to install missing packages from")
    parser.add_argument(
        "--skip",
        nargs="*",
        default=[],
        choices=["ceiling", "scan", "null", "naive", "train"],
        help="steps to leave out",
    )
    args = parser.parse_args()
    install_kit_and_restart(args.kit)
    sizes = CPU if args.cpu else GPU
    env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), str(BENCH), os.environ.get("PYTHONPATH", "")) if p),
    }
    if args.cpu:
        env["CUDA_VISIBLE_DEVICES"] = ""
    runner = Runner(args.work, env)
    report = Report()

    slide_dir = args.work / "slides"
    runner.bench(
        "slides",
        "gpu_report_steps.py",
        "slides",
        "--out",
        str(slide_dir),
        "--count",
        str(sizes.slides),
        "--width",
        str(sizes.slide_px[0]),
        "--height",
        str(sizes.slide_px[1]),
        "--tissue-cells",
        str(sizes.tissue_cells),
        "--texture-px",
        str(sizes.texture_px),
    )
    compile_flags = {"eager": [], "compiled": ["--compile"]}
    if "ceiling" not in args.skip:
        output = runner.bench(
            "model_ceiling",
            "model_ceiling.py",
            "--device",
            sizes.device,
            "--architecture",
            sizes.architecture,
            "--px",
            "96",
            "--no-tta",
            *(["--no-reference"] if args.cpu else []),
            "--batch-size",
            str(sizes.batch_size),
            "--batches",
            str(sizes.ceiling_batches),
            "--warmup",
            "1" if args.cpu else "5",
            *(["--no-compile"] if "compiled" not in sizes.modes else []),
        )
        report.rows += ceiling_rows(output, list(sizes.modes))
    scan_common = scan_throughput_args(slide_dir, sizes)
    if "scan" not in args.skip:
        for mode in sizes.modes:
            output = runner.bench(
                f"scan_{mode}",
                "scan_throughput.py",
                "--architectures",
                sizes.architecture,
                *scan_common,
                *compile_flags[mode],
            )
            report.rows.append(scan_row("end-to-end scan", mode, output, f"{sizes.architecture}, stride 32"))
    if "null" not in args.skip:
        output = runner.bench("scan_null", "scan_throughput.py", "--architectures", "null", *scan_common)
        report.rows.append(scan_row("null-model pipeline", "eager", output, "no model compute"))
    if "naive" not in args.skip:
        output = runner.bench(
            "naive_peer",
            "gpu_report_steps.py",
            "naive",
            "--slides",
            str(slide_dir),
            "--device",
            sizes.device,
            "--architecture",
            sizes.architecture,
            "--workers",
            str(sizes.naive_workers),
            "--patches",
            str(sizes.naive_patches),
            "--batch-size",
            str(sizes.batch_size),
        )
        rate = json.loads(output.strip().splitlines()[-1])["patches_per_s"] if output else None
        report.rows.append(
            Row(
                "naive peer",
                rate,
                "patches/s",
                "eager",
                f"DataLoader, {sizes.naive_workers} workers, 1 read_region per patch",
            )
        )
    if "train" not in args.skip:
        train_args = [
            "throughput",
            "--arch",
            sizes.architecture,
            "--device",
            sizes.device,
            "--sizes",
            *map(str, sizes.train_sizes),
            "--batches",
            str(sizes.train_batches),
        ]
        if sizes.train_batch_size:
            train_args += ["--batch-size", str(sizes.train_batch_size)]
        output = runner.bench("training", "train_synthetic.py", *train_args)
        report.rows += training_rows(output, list(sizes.train_sizes), f"{sizes.architecture}, fastai fit_one_cycle")

    title = (
        f"pcam-scan throughput on {device_name(args.cpu)}: {sizes.slides} slides of "
        f"{sizes.slide_px[0]:,} x {sizes.slide_px[1]:,} px, {time.perf_counter() - runner.started:.0f} s in all"
    )
    table = report.markdown(title)
    (args.work / "gpu_report.md").write_text(table + "\n")
    print(table)
    print(f"\nwritten to {args.work / 'gpu_report.md'}; logs in {runner.logs}")
    return 0 if all(row.rate is not None for row in report.rows) else 1


def scan_throughput_args(slide_dir: Path, sizes: Sizes) -> list[str]:
    """The flags every scan_throughput run gets: our slides, all of them, for every model."""
    common = [
        "--stride",
        "32",
        "--batch-size",
        str(sizes.batch_size),
        "--ceiling-batches",
        str(sizes.ceiling_batches),
        "--slides-from",
        str(slide_dir),
        "--slides",
        str(sizes.slides),
        "--resnet-slides",
        str(sizes.slides),
    ]
    if sizes.device == "cpu":  # a smoke run: the 1-slide scan would only start Ray a second time
        common += ["--num-cpus", str(min(4, os.cpu_count() or 2)), "--no-one-slide-scan"]
    return common


def device_name(cpu: bool) -> str:
    if cpu:
        return f"CPU ({os.cpu_count()} cores)"
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True
        )
        return out.stdout.strip().splitlines()[0]
    except (OSError, IndexError):
        return "GPU"


if __name__ == "__main__":
    sys.exit(main())
