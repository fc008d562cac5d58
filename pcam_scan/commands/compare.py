"""`pcam-scan compare A.zarr B.zarr [--reference reference.csv] [--out DIR]`: what changed
between two runs over the same slides (another model, other settings).

For every slide in both stores: each run's diagnosis (one rule for both: the default rule, or
--aggregator; computed read-only), whether the call flipped, the lesion count and tumour area
deltas, and the max and mean |delta p| on the cells both runs predicted. With --reference: each
run's slide AUC and the paired difference B - A with a bootstrap CI; with --masks or
--annotations as well, each run's FROC score and its delta (the Camelyon16 evaluation's own
code). Writes DIR/comparison.csv, comparison.json and comparison.png. Exit 0, 2 on a user error.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from pcam_scan.commands.options import add_bootstrap_options, add_exclude_option, add_overwrite_option, split_names
from pcam_scan.defaults import COMPARISON_DIR
from pcam_scan.wording import count_noun


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "compare",
        help="two runs over the same slides: diagnosis flips, lesion and heatmap deltas, AUC/FROC delta",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("store_a", metavar="A", help="heatmap store of run A")
    parser.add_argument("store_b", metavar="B", help="heatmap store of run B")
    parser.add_argument("--reference", type=Path, default=None, help="Camelyon16 reference.csv: paired AUC delta")
    parser.add_argument("--masks", type=Path, default=None, help="ground-truth mask TIFFs: FROC delta")
    parser.add_argument("--annotations", type=Path, default=None, help="annotation files: FROC delta")
    add_exclude_option(parser)
    parser.add_argument("--aggregator", type=Path, default=None, help="diagnose both runs with this aggregator")
    add_bootstrap_options(parser, "AUC delta CI")
    parser.add_argument(
        "--out", type=Path, default=Path(COMPARISON_DIR), help=f"output folder (default {COMPARISON_DIR})"
    )
    add_overwrite_option(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pcam_scan.diagnosis.batch import choose_scorer
    from pcam_scan.errors import ConfigError
    from pcam_scan.evaluation import BootstrapSettings, read_reference
    from pcam_scan.evaluation.compare import (
        COMPARISON_CSV,
        COMPARISON_JSON,
        COMPARISON_PNG,
        compare_stores,
        froc_delta,
        reference_auc,
        write_comparison,
    )
    from pcam_scan.outputs import check_output_files, make_output_dir
    from pcam_scan.store import HeatmapStore

    if args.reference is None and (args.masks or args.annotations):
        raise ConfigError("--masks and --annotations need --reference (which slides hold tumour)")
    bootstrap = BootstrapSettings(n_replicates=args.bootstrap, seed=args.seed)
    reference = None if args.reference is None else read_reference(args.reference, split_names(args.exclude))
    outputs = [args.out / name for name in (COMPARISON_CSV, COMPARISON_JSON, COMPARISON_PNG)]
    check_output_files(outputs, args.overwrite)
    scorer = choose_scorer(args.aggregator, None)
    a, b = HeatmapStore.open(args.store_a, mode="r"), HeatmapStore.open(args.store_b, mode="r")
    changes, only_a, only_b = compare_stores(a, b, scorer)
    if not changes:
        raise ConfigError(f"{args.store_a} and {args.store_b} share no slide")
    summary: dict[str, object] = {
        "a": args.store_a,
        "b": args.store_b,
        "rule": scorer.name,
        "slides_compared": len(changes),
        "only_in_a": only_a,
        "only_in_b": only_b,
        "flipped": [c.slide_id for c in changes if c.flipped],
    }
    lines = []
    if reference is not None:
        auc, left_out = reference_auc(changes, reference, bootstrap)
        summary["auc"] = {**auc.__dict__, "left_out": left_out}
        lines.append(
            f"slide AUC A {auc.auc_a:.4f}, B {auc.auc_b:.4f}, B - A {auc.difference:+.4f} "
            f"({round(auc.level * 100)}% paired CI {auc.ci_low:+.4f} to {auc.ci_high:+.4f}) over "
            f"{count_noun(auc.n_slides, 'slide')}" + (f"; left out {', '.join(left_out)}" if left_out else "")
        )
        if args.masks or args.annotations:
            froc = froc_delta(a, b, reference, args.masks, args.annotations, bootstrap, scorer)
            summary["froc"] = froc
            lines.append(f"FROC A {froc['a']:.4f}, B {froc['b']:.4f}, B - A {froc['difference']:+.4f}")
    make_output_dir(args.out)
    write_comparison(args.out, changes, summary)
    for change in changes:
        flip = "FLIP" if change.flipped else "    "
        dp = "" if math.isnan(change.max_abs_dp) else f"|dp| max {change.max_abs_dp:.3f} mean {change.mean_abs_dp:.3f}"
        call_a, call_b = change.call_a or change.status_a, change.call_b or change.status_b
        print(
            f"{change.slide_id:<24} {flip} {call_a:>8} -> {call_b:<8} "
            f"lesions {change.lesions_a:g} -> {change.lesions_b:g}  area {change.area_mm2_a:.3f} -> "
            f"{change.area_mm2_b:.3f} mm2  {dp}  {change.note}"
        )
    flips = [c.slide_id for c in changes if c.flipped]
    only = (f"; only in A: {', '.join(only_a)}" if only_a else "") + (
        f"; only in B: {', '.join(only_b)}" if only_b else ""
    )
    print(f"{count_noun(len(changes), 'slide')} compared, {len(flips)} flipped{only}")
    for line in lines:
        print(line)
    print(f"comparison: {args.out}")
    return 0
