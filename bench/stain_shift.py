"""Benchmark (prints figures, asserts nothing): does the model survive another lab's stain, and
what do HED augmentation and Macenko normalisation buy? Also: calibration on held-out slides, and
training images/s with and without the augmentation.

Train on centre A (synthetic slides of the default stain), test on held-out slides of centres A,
B and C (`pcam_scan.synth.stains.STAIN_PRESETS`: the SAME held-out tissue, same seeds, only the
stain differs), for each of four recipes:
- none: today's recipe (D4, random crop);
- hed: `train --stain-augment` (Tellez HED jitter, HED-light sigma);
- macenko: train and test patches Macenko-normalised (torchstain) to a tissue tile of a centre-A
  training slide (per patch here; a scan normalises per block region);
- both: the two together.
Each row: patch ROC AUC, slide ROC AUC (slide score = max P over its sampled patches), patch ECE
(15 equal-width bins, P(tumour) against the tumour rate) after the temperature fitted on the
valid slides at the end of training, and before it (raw softmax).

    PYTHONPATH=. python bench/stain_shift.py --workdir /tmp/bench-stain
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.metrics import roc_auc_score

from pcam_scan.defaults import HED_AUGMENT_SIGMA
from pcam_scan.evaluation.calibration import ece
from pcam_scan.model.calibrate import network_logits, probabilities
from pcam_scan.model.checkpoint import load_checkpoint
from pcam_scan.model.names import TINY_CNN
from pcam_scan.stain import StainNormaliser, fit_stain_target
from pcam_scan.synth.dataset import write_synthetic_dataset
from pcam_scan.synth.spec import STAIN_PRESET_NAMES, SlideSpec, SynthSpec
from training.mined_data import mine_training_data
from training.mining import MiningSettings, choose_cells, label_slide, read_cell_patches
from training.settings import TrainSettings
from training.slide_cases import find_slide_cases
from training.sources import ArraySource, PatchSource, TrainingData

CENTRES = dict(zip("ABC", STAIN_PRESET_NAMES))
RECIPES = {"none": (False, False), "hed": (True, False), "macenko": (False, True), "both": (True, True)}


def slide_patches(slide_dir: Path, settings: MiningSettings) -> list[tuple[str, bool, np.ndarray, np.ndarray]]:
    """Per held-out slide: id, tumour slide?, capped patches and their labels (no balancing)."""
    out = []
    rng = np.random.default_rng(settings.seed)
    for case in find_slide_cases([slide_dir]):
        cells = label_slide(case, settings)
        chosen = choose_cells(cells, settings, rng)
        x = read_cell_patches(case, cells.grid, chosen.cell_rc, settings)
        out.append((case.slide_id, bool(chosen.labels.any()), x, chosen.labels))
    return out


def normalised(normalise: StainNormaliser, x: np.ndarray) -> np.ndarray:
    return np.stack([normalise(p) for p in x]) if len(x) else x


def normalised_source(normalise: StainNormaliser, source: PatchSource) -> ArraySource:
    return ArraySource(normalised(normalise, source.patches(np.arange(len(source)))), source.labels)


def reference_tile(train_dir: Path, path: Path, settings: MiningSettings) -> Path:
    """A tumour-rich tile of a centre-A training slide: 8 x 8 positive patches' centres side by side."""
    for _, tumour, x, y in slide_patches(train_dir, settings):
        if tumour and int(y.sum()) >= 16:
            tiles = x[y == 1][:16]
            rows = [np.concatenate(list(tiles[r * 4 : r * 4 + 4]), axis=1) for r in range(4)]
            Image.fromarray(np.concatenate(rows, axis=0)).save(path)
            return path
    raise SystemExit("no tumour slide with 16 positive patches to make a reference")


def _row(row: tuple[str, str, float, float, float, float, int, int]) -> str:
    recipe, centre, auc, slide_auc, e, e_raw, n, n_pos = row
    return f"{recipe:8s} {centre:4s} {auc:9.4f} {slide_auc:9.3f} {e:8.4f} {e_raw:8.4f}  {n} ({n_pos} tumour)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir")
    parser.add_argument("--slide-px", type=int, default=3072)
    parser.add_argument("--mpp", type=float, default=0.486, help="level-0 um/px of the synthetic slides")
    parser.add_argument("--tumour", type=int, default=4)
    parser.add_argument("--normal", type=int, default=2)
    parser.add_argument("--test-tumour", type=int, default=3)
    parser.add_argument("--test-normal", type=int, default=3)
    parser.add_argument("--per-slide", type=int, default=300)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--reuse", action="store_true", help="test the models an earlier run left in --workdir")
    args = parser.parse_args(argv)
    from training.run import train_and_export

    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench-stain-"))
    spec = SlideSpec(width_px=args.slide_px, height_px=args.slide_px, mpp_um_px=args.mpp)
    t0 = time.perf_counter()
    train_dir = work / "train_A"
    if not (train_dir / "reference.csv").exists():
        write_synthetic_dataset(train_dir, SynthSpec(spec, args.tumour, args.normal, seed=args.seed))
    test_dirs = {}
    for centre, preset in CENTRES.items():
        test_dirs[centre] = work / f"test_{centre}"
        if not (test_dirs[centre] / "reference.csv").exists():
            held_out = SynthSpec(dataclasses.replace(spec, stain_preset=preset), args.test_tumour, args.test_normal)
            write_synthetic_dataset(test_dirs[centre], dataclasses.replace(held_out, seed=args.seed + 1000))
    print(f"slides ({args.slide_px} px square at {spec.mpp_um_px} um/px) ready in {time.perf_counter() - t0:.0f} s")
    mining = MiningSettings(
        max_positives_per_slide=args.per_slide, max_negatives_per_slide=args.per_slide, seed=args.seed
    )
    data, summary = mine_training_data([train_dir], mining)
    print(f"centre A training patches {data.counts()}; slide split {summary['mining']['slide_split']}")
    held = MiningSettings(max_positives_per_slide=args.per_slide, max_negatives_per_slide=args.per_slide, seed=7)
    tests = {centre: slide_patches(d, held) for centre, d in test_dirs.items()}
    normalise = StainNormaliser(fit_stain_target("macenko", reference_tile(train_dir, work / "reference.png", held)))
    rows = []
    speeds = {}
    for recipe in args.recipes:
        hed, macenko = RECIPES[recipe]
        train_data = data
        if macenko:
            train_data = TrainingData(
                normalised_source(normalise, data.train),
                normalised_source(normalise, data.valid),
                data.geometry,
                data.description + ", Macenko-normalised",
            )
        settings = TrainSettings(
            architecture=TINY_CNN, input_px=96, pretrained=False, frozen_epochs=0, unfrozen_epochs=args.epochs,
            batch_size=64, lr=3e-3, lr_find_iterations=0, seed=args.seed, top_losses=0, device="cpu",
            stain_augment_sigma=HED_AUGMENT_SIGMA if hed else 0.0,
        )  # fmt: skip
        t0 = time.perf_counter()
        checkpoint, report = work / f"{recipe}.safetensors", work / f"{recipe}_report"
        if args.reuse and (report / "metrics.json").exists():
            metrics = json.loads((report / "metrics.json").read_text())  # a model an earlier run trained
        else:
            metrics = train_and_export(train_data, settings, checkpoint, report, progress=False).metrics
        stages = metrics["stages"]
        speeds[recipe] = sum(s["train_images_per_s"] * s["seconds"] for s in stages) / sum(s["seconds"] for s in stages)
        loaded = load_checkpoint(checkpoint)
        temperature = loaded.metadata.temperature or 1.0
        print(f"{recipe}: trained in {time.perf_counter() - t0:.0f} s, T = {temperature:.3f}", flush=True)
        for centre, slides in tests.items():
            probs_raw, probs, labels, slide_y, slide_p = [], [], [], [], []
            for _, tumour, x, y in slides:
                x = normalised(normalise, x) if macenko else x
                logits = network_logits(loaded, [x[i : i + 256] for i in range(0, len(x), 256)])
                p = probabilities(logits, loaded.metadata.tumour_index, temperature)
                probs_raw.append(probabilities(logits, loaded.metadata.tumour_index))
                probs.append(p)
                labels.append(y)
                slide_y.append(tumour)
                slide_p.append(float(p.max()) if len(p) else 0.0)
            p_all, y_all = np.concatenate(probs), np.concatenate(labels)
            rows.append((
                recipe, centre, roc_auc_score(y_all, p_all), roc_auc_score(slide_y, slide_p),
                ece(p_all, y_all), ece(np.concatenate(probs_raw), y_all), len(y_all), int(y_all.sum()),
            ))  # fmt: skip
            print("  " + _row(rows[-1]), flush=True)  # as it comes: a long run shows progress
    print()
    print("train on centre A; test on held-out slides of centres A, B, C (same tissue, other stain)")
    print(f"{'recipe':8s} {'test':4s} {'patch AUC':>9s} {'slide AUC':>9s} {'ECE (T)':>8s} {'ECE raw':>8s}  patches")
    for row in rows:
        print(_row(row))
    print()
    for recipe in args.recipes:
        drop = {c: r[2] for r in rows if r[0] == recipe for c in [r[1]]}
        print(f"{recipe:8s} patch-AUC drop A->B {drop['A'] - drop['B']:+.4f}, A->C {drop['A'] - drop['C']:+.4f}")
    print()
    for recipe, speed in speeds.items():
        print(f"{recipe:8s} training {speed:.0f} images/s (tiny-cnn 96 px, batch 64, CPU, incl. the per-epoch valid)")
    print(f"work folder {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
