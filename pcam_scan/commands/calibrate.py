"""`pcam-scan calibrate CKPT --out NEW`: fit one temperature on labelled patches and write a
calibrated copy of the checkpoint (same weights and model id, a `calibration` in the metadata).

Patches come from a PCam HDF5 folder, a Kaggle-layout patches folder, or annotated slides, read
by the same code as `train` (the `training` package, imported when the command runs); the fit and
the figures are `pcam_scan.model.calibrate` and `pcam_scan.evaluation.calibration`.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from pcam_scan import defaults
from pcam_scan.errors import ConfigError
from pcam_scan.wording import count_noun

SPLITS = ("train", "valid", "test", "all")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "calibrate",
        help="fit a temperature on labelled patches and write a calibrated copy of a checkpoint",
        description="Temperature scaling (Guo et al. 2017): the logits of labelled patches are divided by "
        "the one T that minimises their negative log likelihood; the new checkpoint carries T, the scorer "
        "applies it, and a scan records it in its settings hash. The input is never overwritten.",
    )
    parser.add_argument("checkpoint", metavar="CKPT", help="the checkpoint to calibrate (.safetensors)")
    parser.add_argument("--out", metavar="NEW", required=True, help="the calibrated checkpoint to write")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--pcam", metavar="DIR", help="folder with camelyonpatch_level_2_split_*_{x,y}.h5")
    source.add_argument("--kaggle", metavar="DIR", help="patches folder: train/*.tif and train_labels.csv")
    source.add_argument("--slides", metavar="DIR", nargs="+", help="slide folder(s) with annotations to mine")
    parser.add_argument(
        "--split",
        choices=SPLITS,
        default="valid",
        help="which split of the data to fit on (default valid; slides: all mined patches)",
    )
    parser.add_argument(
        "--valid-fraction",
        type=float,
        default=defaults.VALID_FRACTION,
        help=f"valid share of Kaggle patches (default {defaults.VALID_FRACTION})",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the Kaggle split and of mining (default 0)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    parser.add_argument("--report", metavar="JSON", help="also write the figures before and after as JSON")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out (never the input)")
    parser.set_defaults(func=handle)


def _patches(args: argparse.Namespace, geometry: Any) -> tuple[Any, str]:
    """The labelled patches to fit on, and what they are (for the checkpoint)."""
    if args.slides:
        return _slide_patches(args, geometry)
    from training.inputs import load_training_data

    data, _ = load_training_data(
        geometry, pcam=args.pcam, kaggle=args.kaggle, valid_fraction=args.valid_fraction, seed=args.seed
    )
    named = dict(data.named_splits())
    if args.split == "all":
        import numpy as np

        from training.sources import ArraySource

        parts = [s for s in named.values() if len(s)]
        x = np.concatenate([s.patches(np.arange(len(s))) for s in parts])
        source: Any = ArraySource(x, np.concatenate([s.labels for s in parts]))
    elif args.split not in named or not len(named[args.split]):
        raise ConfigError(f"the data has no {args.split} split to calibrate on (choose --split)")
    else:
        source = named[args.split]
    return source, f"{data.description}, {args.split} split, {count_noun(len(source), 'patch')}"


def _slide_patches(args: argparse.Namespace, geometry: Any) -> tuple[Any, str]:
    """Every annotated slide's mined patches: one temperature needs no split by slide (training's
    split refused two slides), and every sampled negative is kept (a balanced set would
    calibrate to a 50% tumour prevalence)."""
    from training.mined_data import mined_description
    from training.mining import MiningSettings, mine_slides
    from training.slide_cases import find_slide_cases

    cases = find_slide_cases(args.slides)
    settings = MiningSettings(geometry=geometry, negatives_per_positive=None, valid_fraction=0.0, seed=args.seed)
    source = mine_slides(cases, settings).splits["train"].source()
    return source, f"{mined_description(cases, args.slides)}, all slides, {count_noun(len(source), 'patch')}"


def handle(args: argparse.Namespace) -> int:
    from pcam_scan.model.calibrate import (
        LOGIT_BATCH,
        check_calibrated_output,
        fit_on_logits,
        network_logits,
        write_calibrated,
    )
    from pcam_scan.model.checkpoint import load_checkpoint
    from pcam_scan.model.names import is_device_name
    from pcam_scan.outputs import check_output_file, write_output_text

    if not is_device_name(args.device):
        raise ConfigError(f"device {args.device!r} is not one of auto, cpu, cuda, cuda:N")
    check_calibrated_output(args.checkpoint, args.out, args.overwrite)
    if args.report:
        check_output_file(Path(args.report), args.overwrite)
    loaded = load_checkpoint(args.checkpoint, "cpu" if args.device == "auto" else args.device)
    source, description = _patches(args, loaded.metadata.geometry())
    if len(source) == 0:
        raise ConfigError("no labelled patches to calibrate on")
    batches = (source.patches(range_) for range_ in _chunks(len(source), LOGIT_BATCH))
    logits = network_logits(loaded, batches)
    fit = fit_on_logits(logits, source.labels, loaded.metadata.tumour_index)
    model_id = write_calibrated(loaded, args.out, fit.temperature, description, fit.nll_before, fit.nll_after)
    before, after = fit.before, fit.after
    print(f"temperature {fit.temperature:.4g} fitted on {description}")
    print(f"NLL                        before {fit.nll_before:.4f}  after {fit.nll_after:.4f}")
    print(f"ECE (15 equal-width bins)  before {before.ece_width.value:.4f}  after {after.ece_width.value:.4f}")
    print(f"Brier                      before {before.brier.value:.4f}  after {after.brier.value:.4f}")
    print(f"checkpoint {args.out}  model id {model_id} (same weights)")
    if args.report:
        import json

        doc = {"checkpoint": args.checkpoint, "out": args.out, "data": description, **fit.to_dict()}
        write_output_text(Path(args.report), json.dumps(doc, indent=2, sort_keys=True) + "\n", overwrite=True)
    return 0


def _chunks(n: int, size: int) -> Any:
    import numpy as np

    for start in range(0, n, size):
        yield np.arange(start, min(n, start + size))
