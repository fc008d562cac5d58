"""Benchmark (prints figures, asserts nothing): does the training pipeline learn tumour from
slides, and how fast does it train?

quality: write `pcam-scan synth` slides (training set and a held-out set with another seed), mine
patches from the training slides (split by slide), train with the recipe, export, then score
patches mined from the held-out slides with the scanner's Predictor on the exported checkpoint
and print the patch-level ROC AUC (the issue asks for >= 0.95).

throughput: training images/s of the recipe (fastai fit_one_cycle, mixed precision and
channels_last on CUDA) at 96 and 224 px on random patches, after a warm-up epoch.

    python bench/train_synthetic.py quality --arch tiny-cnn --workdir /tmp/bench-train
    python bench/train_synthetic.py throughput --arch resnet50-fastai-head
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from pcam_scan.geometry import PatchGeometry
from pcam_scan.model.architectures import RESNET50_FASTAI, TINY_CNN
from pcam_scan.model.predictor import Predictor, PredictorSettings
from pcam_scan.synth.dataset import write_synthetic_dataset
from pcam_scan.synth.spec import SlideSpec, SynthSpec
from training.mined_data import mine_training_data
from training.mining import MiningSettings, choose_cells, label_slide, read_cell_patches
from training.settings import TrainSettings
from training.slide_cases import find_slide_cases
from training.sources import ArraySource, TrainingData


def held_out_patches(slide_dir: Path, settings: MiningSettings) -> tuple[np.ndarray, np.ndarray]:
    """Capped positives and negatives of every held-out slide (no balancing, no split)."""
    xs, ys = [], []
    rng = np.random.default_rng(settings.seed)
    for case in find_slide_cases([slide_dir]):
        cells = label_slide(case, settings)
        chosen = choose_cells(cells, settings, rng)
        xs.append(read_cell_patches(case, cells.grid, chosen.cell_rc, settings))
        ys.append(chosen.labels)
    return np.concatenate(xs), np.concatenate(ys)


def quality(args: argparse.Namespace) -> None:
    from training.run import train_and_export

    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench-train-"))
    spec = SlideSpec(width_px=args.slide_px, height_px=args.slide_px)
    train_dir, test_dir = work / "train_slides", work / "heldout_slides"
    t0 = time.perf_counter()
    if not (train_dir / "reference.csv").exists():
        write_synthetic_dataset(train_dir, SynthSpec(spec, args.tumour, args.normal, seed=args.seed))
    if not (test_dir / "reference.csv").exists():
        write_synthetic_dataset(test_dir, SynthSpec(spec, 2, 1, seed=args.seed + 1000))
    print(f"slides ready in {time.perf_counter() - t0:.0f} s under {work}")
    mining = MiningSettings(
        max_positives_per_slide=args.per_slide, max_negatives_per_slide=args.per_slide, seed=args.seed
    )
    t0 = time.perf_counter()
    data, summary = mine_training_data([train_dir], mining)
    print(f"mined {data.counts()} in {time.perf_counter() - t0:.0f} s; slide split {summary['mining']['slide_split']}")
    settings = TrainSettings(
        architecture=args.arch,
        input_px=args.size,
        pretrained=args.arch == RESNET50_FASTAI and not args.no_pretrained,
        frozen_epochs=args.frozen_epochs,
        unfrozen_epochs=args.epochs,
        batch_size=args.batch_size,
        lr_find_iterations=args.lr_find_iterations,
        seed=args.seed,
    )
    t0 = time.perf_counter()
    outcome = train_and_export(
        data, settings, work / "model.safetensors", work / "report", progress=False, extra=summary
    )
    valid = outcome.metrics["splits"]["valid"]
    print(f"trained in {time.perf_counter() - t0:.0f} s: valid accuracy {valid['accuracy']:.4f} AUC {valid['auc']}")
    x, y = held_out_patches(
        test_dir, MiningSettings(max_positives_per_slide=1000, max_negatives_per_slide=1000, seed=args.seed)
    )
    probs = Predictor.from_checkpoint(outcome.checkpoint, PredictorSettings(device=args.device)).predict(x)
    auc = roc_auc_score(y, probs)
    accuracy = float(((probs > 0.5) == (y == 1)).mean())
    print(
        f"held-out synthetic slides: {len(y)} patches ({int(y.sum())} tumour), patch ROC AUC {auc:.4f}, accuracy "
        f"{accuracy:.4f}"
    )
    print(f"report in {outcome.report_dir}")


def throughput(args: argparse.Namespace) -> None:
    from training.recipe import build_learner

    rng = np.random.default_rng(0)
    for size in args.sizes:
        settings = TrainSettings(
            architecture=args.arch, input_px=size, pretrained=False, batch_size=args.batch_size,
            lr=1e-3, lr_find_iterations=0, device=args.device,
        )  # fmt: skip
        n = (args.batch_size or 256) * args.batches
        x = rng.integers(0, 256, (n, 96, 96, 3), dtype=np.uint8)
        y = np.arange(n) % 2
        data = TrainingData(ArraySource(x, y), ArraySource(x[:256], y[:256]), PatchGeometry(), "random patches")
        with tempfile.TemporaryDirectory() as work:
            learn, device, batch_size, precision, _ = build_learner(data, settings, Path(work))
            learn.remove_cb(learn.progress)
            learn.unfreeze()
            learn.fit_one_cycle(1, 1e-3)  # warm-up: cuDNN autotuning, worker start
            start = time.perf_counter()
            learn.fit_one_cycle(args.epochs_timed, 1e-3)
            seconds = time.perf_counter() - start
        images = len(learn.dls.train) * batch_size * args.epochs_timed
        print(
            f"{args.arch} {size} px on {device} ({precision}, batch {batch_size}): {images / seconds:.0f} train "
            "images/s (incl. a 256-patch validation per epoch)"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    q = sub.add_parser("quality")
    q.add_argument("--workdir")
    q.add_argument("--arch", default=TINY_CNN)
    q.add_argument("--no-pretrained", action="store_true")
    q.add_argument("--size", type=int, default=96)
    q.add_argument("--tumour", type=int, default=4)
    q.add_argument("--normal", type=int, default=2)
    q.add_argument("--slide-px", type=int, default=8192)
    q.add_argument("--per-slide", type=int, default=600)
    q.add_argument("--frozen-epochs", type=int, default=1)
    q.add_argument("--epochs", type=int, default=3)
    q.add_argument("--batch-size", type=int, default=64)
    q.add_argument("--lr-find-iterations", type=int, default=50)
    q.add_argument("--device", default="auto")
    q.add_argument("--seed", type=int, default=0)
    q.set_defaults(func=quality)
    t = sub.add_parser("throughput")
    t.add_argument("--arch", default=RESNET50_FASTAI)
    t.add_argument("--sizes", type=int, nargs="+", default=[96, 224])
    t.add_argument("--batch-size", type=int, default=None)
    t.add_argument("--batches", type=int, default=40)
    t.add_argument("--epochs-timed", type=int, default=1)
    t.add_argument("--device", default="auto")
    t.set_defaults(func=throughput)
    args = parser.parse_args(argv)
    args.func(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
