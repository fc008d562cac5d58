"""`pcam-scan train`: train a scanner checkpoint with the fastai recipe on PCam HDF5 files, the
Kaggle copy of PCam, or patches mined from one's own annotated slides.

This module builds the parser and turns arguments into settings (fastai-free, so `pcam-scan
--help` stays fast); the `training` package, which takes resolved settings, does the work, and
fastai is imported when a run starts (`run`).
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import fields
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING

from pcam_scan import defaults
from pcam_scan.errors import ConfigError
from pcam_scan.geometry import LABEL_RULES, PCAM_LABEL_PX, PCAM_MPP_UM_PX, PCAM_PATCH_PX, PatchGeometry
from pcam_scan.wording import count_noun
from training.settings import DEFAULT_ARCHITECTURE, PRECISIONS, SMALL_ARCHITECTURE, TrainSettings

if TYPE_CHECKING:
    from training.mining import MiningSettings

DESCRIPTION = """\
Train a patch classifier with the original PCam fastai recipe (ResNet50, ImageNet weights,
D4 flips, random crop, lr_find, fit_one_cycle frozen then unfrozen with slice(lr/10, lr)) and
write a scanner checkpoint (.safetensors) plus a report folder (lr_find, loss curves, confusion
matrix, top losses with Grad-CAM, metrics.json). Data: --pcam (official HDF5 files), --kaggle
(train/*.tif + train_labels.csv) or --slides (patches mined from slides + annotations, split by
slide). Nothing is downloaded: see the README for where to get PCam and Camelyon16."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Every option of `pcam-scan train` (no fastai import)."""
    d = SimpleNamespace(**{f.name: f.default for f in fields(TrainSettings)})  # no validation: no torch
    source = parser.add_argument_group("data (exactly one)")
    which = source.add_mutually_exclusive_group(required=True)
    which.add_argument("--pcam", metavar="DIR", help="folder with camelyonpatch_level_2_split_*_{x,y}.h5")
    which.add_argument("--kaggle", metavar="DIR", help="folder with train/ and train_labels.csv")
    which.add_argument("--slides", metavar="DIR", nargs="+", help="slide folder(s) to mine patches from")
    source.add_argument(
        "--valid-fraction",
        type=float,
        default=defaults.VALID_FRACTION,
        help=f"valid share of Kaggle patches or of slides (default {defaults.VALID_FRACTION})",
    )
    source.add_argument("--patch-px", type=int, default=PCAM_PATCH_PX, help=f"patch side (default {PCAM_PATCH_PX})")
    source.add_argument(
        "--label-px", type=int, default=PCAM_LABEL_PX, help=f"centre label side (default {PCAM_LABEL_PX})"
    )
    source.add_argument(
        "--label-rule",
        choices=LABEL_RULES,
        default="pcam-any",
        help=(
            "when a patch is tumour: any tumour in the centre label square (pcam-any, PCam's rule, default) or over "
            "half of it (centre-majority; --slides with annotations only); recorded in the checkpoint"
        ),
    )
    source.add_argument("--mpp", type=float, default=PCAM_MPP_UM_PX, help=f"patch um/px (default {PCAM_MPP_UM_PX})")

    mine = parser.add_argument_group("mining (with --slides)")
    mine.add_argument(
        "--annotations", metavar="DIR", help="annotation files NAME.xml/.geojson/.json (default SLIDES/annotations)"
    )
    mine.add_argument("--masks", metavar="DIR", help="tumour masks NAME_Mask.tif (default SLIDES/masks)")
    mine.add_argument(
        "--reference",
        metavar="CSV",
        help="Camelyon16 reference.csv to cross-check tumour/normal (default SLIDES/reference.csv)",
    )
    mine.add_argument("--slide-mpp", type=float, help="override every slide's level-0 um/px")
    mine.add_argument("--test-fraction", type=float, default=0.0, help="share of slides held out as test (default 0)")
    mine.add_argument(
        "--max-positives-per-slide",
        type=int,
        default=defaults.MAX_POSITIVES_PER_SLIDE,
        help=f"(default {defaults.MAX_POSITIVES_PER_SLIDE})",
    )
    mine.add_argument(
        "--max-negatives-per-slide",
        type=int,
        default=defaults.MAX_NEGATIVES_PER_SLIDE,
        help=f"(default {defaults.MAX_NEGATIVES_PER_SLIDE})",
    )
    mine.add_argument(
        "--negatives-per-positive",
        type=float,
        default=defaults.NEGATIVES_PER_POSITIVE,
        help=(
            "balance each split to this ratio; 0 keeps every sampled negative (default "
            f"{defaults.NEGATIVES_PER_POSITIVE:g})"
        ),
    )
    mine.add_argument(
        "--hard-negatives", metavar="CKPT", help="previous checkpoint whose false positives become negatives"
    )
    mine.add_argument(
        "--hard-fraction",
        type=float,
        default=defaults.HARD_NEGATIVE_FRACTION,
        help=f"share of each slide's negatives taken from false positives (default {defaults.HARD_NEGATIVE_FRACTION})",
    )
    mine.add_argument(
        "--hard-pool",
        type=int,
        default=defaults.HARD_NEGATIVE_POOL_PER_SLIDE,
        help=f"negatives scored per slide for hard-negative mining (default {defaults.HARD_NEGATIVE_POOL_PER_SLIDE})",
    )
    mine.add_argument(
        "--hard-min-prob",
        type=float,
        default=defaults.HARD_NEGATIVE_MIN_PROBABILITY,
        help=f"P(tumour) from which a negative is hard (default {defaults.HARD_NEGATIVE_MIN_PROBABILITY})",
    )
    mine.add_argument(
        "--save-patches", metavar="DIR", help="also write the mined splits in PCam HDF5 layout (reuse with --pcam DIR)"
    )
    mine.add_argument("--mine-only", action="store_true", help="stop after --save-patches")

    recipe = parser.add_argument_group("recipe")
    recipe.add_argument("--out", metavar="CKPT", help="checkpoint to write (.safetensors)")
    recipe.add_argument("--report", metavar="DIR", help="report folder (default: CKPT name + _report)")
    recipe.add_argument(
        "--arch",
        default=d.architecture,
        help=f"network: {DEFAULT_ARCHITECTURE} (default) or {SMALL_ARCHITECTURE} (small, for CPU runs)",
    )
    recipe.add_argument(
        "--size",
        type=int,
        default=d.input_px,
        help=f"network input px: 224 as the original, or 96 native (default {d.input_px})",
    )
    recipe.add_argument("--no-pretrained", action="store_true", help="start from random weights")
    recipe.add_argument(
        "--weights",
        metavar="FILE",
        help="ImageNet ResNet50 weights (.pth/.safetensors) or a pcam-scan checkpoint to go on from",
    )
    recipe.add_argument(
        "--frozen-epochs",
        type=int,
        default=d.frozen_epochs,
        help=f"epochs with the body frozen (default {d.frozen_epochs})",
    )
    recipe.add_argument(
        "--epochs", type=int, default=d.unfrozen_epochs, help=f"epochs after unfreezing (default {d.unfrozen_epochs})"
    )
    recipe.add_argument("--lr", type=float, help="learning rate (default: lr_find's suggestion)")
    recipe.add_argument("--wd", type=float, default=d.weight_decay, help=f"weight decay (default {d.weight_decay})")
    recipe.add_argument(
        "--batch-size", type=int, help="batch size (default: the largest power of two the GPU takes; 64 on CPU)"
    )
    recipe.add_argument(
        "--crop-min-area",
        type=float,
        default=d.crop_min_area,
        help=f"smallest random crop, share of the patch area (default {d.crop_min_area})",
    )
    recipe.add_argument(
        "--lr-find-iterations",
        type=int,
        default=d.lr_find_iterations,
        help=f"lr_find steps; 0 skips it (needs --lr) (default {d.lr_find_iterations})",
    )
    recipe.add_argument(
        "--precision", default=d.precision, choices=PRECISIONS, help="auto: bf16 (or fp16) on CUDA, fp32 on CPU"
    )
    recipe.add_argument("--device", default=d.device, help="auto, cpu, cuda or cuda:N (default auto)")
    recipe.add_argument("--workers", type=int, help="data loader processes (default 0 on CPU, up to 8 on CUDA)")
    recipe.add_argument(
        "--seed", type=int, default=d.seed, help=f"seed of splits, sampling and training (default {d.seed})"
    )
    recipe.add_argument(
        "--top-losses",
        type=int,
        default=d.top_losses,
        help=f"patches in the top-losses figure (default {d.top_losses})",
    )
    recipe.add_argument(
        "--stain-augment",
        type=float,
        nargs="?",
        const=defaults.HED_AUGMENT_SIGMA,
        default=d.stain_augment_sigma,
        metavar="SIGMA",
        help=(
            "HED colour jitter of the training batches (Tellez et al.), strength SIGMA "
            f"(default off; the flag alone: {defaults.HED_AUGMENT_SIGMA}, HED-light)"
        ),
    )
    recipe.add_argument("--quiet", action="store_true", help="no progress bars")
    recipe.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing checkpoint, report files or saved patches (default: refuse)",
    )


def settings_from_args(args: argparse.Namespace) -> TrainSettings:
    """The recipe's settings from the options (validated by TrainSettings)."""
    return TrainSettings(
        architecture=args.arch,
        input_px=args.size,
        pretrained=not args.no_pretrained,
        weights_path=Path(args.weights) if args.weights else None,
        frozen_epochs=args.frozen_epochs,
        unfrozen_epochs=args.epochs,
        lr=args.lr,
        weight_decay=args.wd,
        batch_size=args.batch_size,
        crop_min_area=args.crop_min_area,
        lr_find_iterations=args.lr_find_iterations,
        precision=args.precision,
        device=args.device,
        num_workers=args.workers,
        seed=args.seed,
        top_losses=args.top_losses,
        stain_augment_sigma=args.stain_augment,
    )


def mining_settings_from_args(args: argparse.Namespace, geometry: PatchGeometry) -> MiningSettings:
    """The mining settings of --slides, with hard-negative mining when --hard-negatives names a checkpoint."""
    from training.mining import HardNegativeSettings, MiningSettings

    hard = None
    if args.hard_negatives:
        hard = HardNegativeSettings(
            checkpoint=args.hard_negatives,
            fraction=args.hard_fraction,
            pool_per_slide=args.hard_pool,
            min_probability=args.hard_min_prob,
            device=args.device,
        )
    return MiningSettings(
        geometry=geometry,
        max_positives_per_slide=args.max_positives_per_slide,
        max_negatives_per_slide=args.max_negatives_per_slide,
        negatives_per_positive=args.negatives_per_positive or None,
        valid_fraction=args.valid_fraction,
        test_fraction=args.test_fraction,
        seed=args.seed,
        hard_negatives=hard,
        mpp_override_um_px=args.slide_mpp,
    )


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a scanner checkpoint on PCam, Kaggle PCam or patches mined from slides",
        description=DESCRIPTION,
    )
    add_arguments(parser)
    parser.set_defaults(func=run)


def check_options(args: argparse.Namespace) -> None:
    """Options that only go together, refused before anything is read or written."""
    if args.mine_only and not (args.slides and args.save_patches):
        raise ConfigError("--mine-only needs --slides and --save-patches")
    if not args.mine_only and not args.out:
        raise ConfigError("give the checkpoint to write with --out CKPT")
    if args.save_patches and not args.slides:
        raise ConfigError("--save-patches only applies to --slides")
    if args.label_rule != "pcam-any" and not args.slides:
        raise ConfigError(
            "--label-rule centre-majority needs --slides: PCam and Kaggle patches come labelled by the pcam-any rule"
        )


def run(args: argparse.Namespace) -> int:
    """The `train` command: settings and outputs are checked before any data is read."""
    from training.inputs import SlideSource, check_outputs, default_report_dir, load_training_data

    check_options(args)
    checkpoint = None if args.mine_only else Path(args.out)
    report = None
    if checkpoint is not None:
        report = Path(args.report) if args.report else default_report_dir(checkpoint)
    save_patches = Path(args.save_patches) if args.save_patches else None
    check_outputs(checkpoint, report, save_patches, args.overwrite)
    geometry = PatchGeometry(
        patch_px=args.patch_px, label_px=args.label_px, mpp_um_px=args.mpp, label_rule=args.label_rule
    )
    settings = None if args.mine_only else settings_from_args(args)
    slides = None
    if args.slides:
        slides = SlideSource(
            args.slides,
            mining_settings_from_args(args, geometry),
            args.annotations,
            args.masks,
            args.reference,
            args.save_patches,
        )
    if not args.mine_only:
        logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    data, summary = load_training_data(
        geometry, pcam=args.pcam, kaggle=args.kaggle, slides=slides, valid_fraction=args.valid_fraction, seed=args.seed
    )
    if settings is None or checkpoint is None or report is None:
        print(f"wrote mined patches to {args.save_patches}: {data.counts()}")
        return 0
    from training.run import train_and_export

    # fastai's bars redraw in place: only on a terminal, never into a log file
    progress = not args.quiet and sys.stderr.isatty()
    outcome = train_and_export(
        data, settings, checkpoint, report, progress=progress, extra=summary, epoch_rows=not args.quiet
    )
    splits = outcome.metrics["splits"]
    for name, split in splits.items():
        auc = "n/a" if split["auc"] is None else f"{split['auc']:.4f}"
        print(f"{name:5s}  accuracy {split['accuracy']:.4f}  ROC AUC {auc}  ({count_noun(split['n'], 'patch')})")
    print(f"checkpoint {outcome.checkpoint}  model id {outcome.model_id}")
    print(f"report     {outcome.report_dir}")
    return 0
