"""A synthetic Camelyon16-like data set in one folder:

    OUT_DIR/tumor_001.tif ... normal_001.tif ...   slides (pyramidal JPEG TIFF)
    OUT_DIR/annotations/tumor_001.xml ...           ASAP XML, Camelyon16 style (`_0`, `_2`)
    OUT_DIR/masks/tumor_001_Mask.tif ...            level-5 lesion masks
    OUT_DIR/qc/tumor_001_qc.npz ...                 with artefacts: their true masks on the cell grid
    OUT_DIR/reference.csv                           Camelyon16 layout, no header
    OUT_DIR/synth.json                              the lesions (centre, size, category) for tests

Ground truth sits in sub-folders, as in Camelyon16's release, so `OUT_DIR/*.tif` is exactly the
slides. Every slide is planned before any is written: a setting that cannot work fails at once.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from pcam_scan.diagnosis.rule import SizeCategory
from pcam_scan.errors import ConfigError
from pcam_scan.outputs import check_output_files
from pcam_scan.synth.files import written_atomically
from pcam_scan.synth.ground_truth import MASK_DOWNSAMPLE, MASK_LEVEL, write_ground_truth, write_qc_truth
from pcam_scan.synth.layout import Category, SlidePlan, plan_slide
from pcam_scan.synth.patients import PATIENTS_CSV, REFERENCE_STAGES_CSV, PatientPlan, plan_patients, write_patient_files
from pcam_scan.synth.slide_writer import SynthSlide, write_planned_slide
from pcam_scan.synth.spec import SynthSpec, slide_seed

MANIFEST_FORMAT = "pcam-scan-synth/1"


@dataclass(frozen=True)
class SynthProgress:
    """Where a data set's writing is: slide `slide_index` (0-based) of `slide_count`, and the
    rows of pyramid level `level` done so far."""

    slide_name: str
    slide_index: int
    slide_count: int
    level: int
    rows_done: int
    level_rows: int


ProgressCallback = Callable[[SynthProgress], None]


PATIENT_SEED_OFFSET = 1_000_000
"""Node slides' seeds index past any tumour or normal slide's (MAX_SLIDES), so adding patients
changes no other slide's bytes."""


def slide_names(spec: SynthSpec) -> list[tuple[str, bool, int]]:
    """(name, tumour, seed index) per slide, in writing order: Camelyon16 names, then the
    patients' node slides (Camelyon17 names)."""
    tumour = [(f"tumor_{i + 1:03d}", True, i) for i in range(spec.tumour_count)]
    normal = [(f"normal_{i + 1:03d}", False, i) for i in range(spec.normal_count)]
    nodes = [
        (name, category != "negative", PATIENT_SEED_OFFSET + i)
        for i, (name, category) in enumerate(node_categories(spec).items())
    ]
    return tumour + normal + nodes


def node_categories(spec: SynthSpec) -> dict[str, SizeCategory]:
    """Each patient node slide's category, in writing order (none without --patients)."""
    return {name: category for plan in patient_plans(spec) for name, category in plan.nodes}


def patient_plans(spec: SynthSpec) -> list[PatientPlan]:
    return plan_patients(spec.patient_count, spec.seed)


def dataset_files(out: Path, spec: SynthSpec) -> list[Path]:
    """Every file the data set writes under `out`."""
    files = [out / "reference.csv", out / "synth.json"]
    if spec.patient_count:
        files += [out / PATIENTS_CSV, out / REFERENCE_STAGES_CSV]
    for name, tumour, _ in slide_names(spec):
        files.append(out / f"{name}.tif")
        if tumour:
            files += [out / "annotations" / f"{name}.xml", out / "masks" / f"{name}_Mask.tif"]
        if spec.artefacts is not None and spec.artefacts.any:
            files.append(qc_truth_path(out, name))
    return files


def qc_truth_path(out: Path, name: str) -> Path:
    """Where a slide's true artefact masks on the cell grid go."""
    return out / "qc" / f"{name}_qc.npz"


def write_synthetic_dataset(
    out_dir: str | Path,
    spec: SynthSpec,
    on_progress: ProgressCallback | None = None,
    overwrite: bool = True,
) -> list[SynthSlide]:
    """Write the data set (see the module doc); same spec, same bytes. Existing files are
    replaced only with `overwrite`; special files and links never (pcam_scan.outputs)."""
    out = prepare_out_dir(out_dir)
    check_output_files(dataset_files(out, spec), overwrite)
    jobs = slide_names(spec)
    stale = sorted({p.stem for p in out.glob("*.tif")} - {name for name, _, _ in jobs})
    if stale:
        raise ConfigError(
            f"{out} holds slides this data set would not list in its reference.csv "
            f"({', '.join(stale[:3])}{', ...' if len(stale) > 3 else ''}); use an empty folder"
        )
    nodes: dict[str, SizeCategory] = node_categories(spec)
    plans = [
        plan_slide(spec.slide, slide_seed(spec.seed, tumour, i), tumour, _node_lesion_kind(nodes.get(name)))
        for name, tumour, i in jobs
    ]
    slides = []
    for index, ((name, tumour, _), plan) in enumerate(zip(jobs, plans, strict=True)):
        on_rows = None
        if on_progress is not None:
            on_rows = _slide_progress(on_progress, name, index, len(jobs))
        try:
            slide = write_planned_slide(out / f"{name}.tif", plan, on_rows, spec.artefacts)
            if spec.artefacts is not None and spec.artefacts.any:
                slide = write_qc_truth(slide, qc_truth_path(out, name))
            if tumour:
                slide = write_ground_truth(
                    slide, out / "annotations" / f"{name}.xml", out / "masks" / f"{name}_Mask.tif"
                )
        except OSError as err:
            raise ConfigError(f"cannot write {name} in {out}: {err.strerror or err}") from None
        slides.append(slide)
    write_reference_csv(out / "reference.csv", slides)
    if spec.patient_count:
        write_patient_files(out, patient_plans(spec))
    write_manifest(out / "synth.json", spec, slides, out)
    return slides


def _node_lesion_kind(category: SizeCategory | None) -> Category | None:
    """The lesion a node slide holds: its category's, none for a negative node or a non-node."""
    return None if category in (None, "negative") else cast(Category, category)


def _slide_progress(
    on_progress: ProgressCallback, name: str, index: int, count: int
) -> Callable[[int, int, int], None]:
    def on_rows(level: int, rows_done: int, level_rows: int) -> None:
        on_progress(SynthProgress(name, index, count, level, rows_done, level_rows))

    return on_rows


def prepare_out_dir(out_dir: str | Path) -> Path:
    """Create OUT_DIR if needed and prove it writable; any failure is one ConfigError line."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"output folder {out} exists and is not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as err:
        raise ConfigError(f"cannot write to output folder {out}: {err.strerror or err}") from None
    return out


def reference_row(slide: SynthSlide) -> str:
    """`name,Tumor|Normal,histotype,Macro|Micro|None` as in Camelyon16's reference.csv."""
    plan: SlidePlan = slide.plan
    kind = "Tumor" if slide.tumour else "Normal"
    return f"{slide.name},{kind},{plan.histotype},{plan.category}"


def write_reference_csv(path: Path, slides: list[SynthSlide]) -> None:
    rows = [reference_row(slide) for slide in sorted(slides, key=lambda s: s.name)]
    with written_atomically(path) as partial:
        partial.write_text("\n".join(rows) + "\n", encoding="utf-8")


def write_manifest(path: Path, spec: SynthSpec, slides: list[SynthSlide], out: Path) -> None:
    """synth.json: the settings and, per slide, its files and lesions (level-0 centre, longest
    diameter in um, category, and the names of its annotation polygons)."""

    def relative(p: Path | None) -> str | None:
        return None if p is None else os.path.relpath(p, out)

    entries = []
    for slide in slides:
        lesions = [
            {
                "annotation": tumour_name,
                "exclusion_annotation": exclusion_name,
                "category": lesion.category,
                "diameter_um": round(lesion.diameter_um, 3),
                "l0_centre_xy": list(lesion.l0_centre_xy),
            }
            for lesion, (tumour_name, exclusion_name) in zip(slide.lesions, slide.plan.annotation_names(), strict=True)
        ]
        entries.append(
            {
                "name": slide.name,
                "file": relative(slide.path),
                "tumour": slide.tumour,
                "seed": slide.plan.seed,
                "histotype": slide.plan.histotype,
                "category": slide.plan.category,
                "levels_wh": [list(wh) for wh in slide.level_wh],
                "annotation": relative(slide.xml_path),
                "mask": relative(slide.mask_path),
                "lesions": lesions,
                "qc_truth": relative(slide.qc_truth_path),
                "artefacts": {
                    "ink": [stroke.colour for stroke in slide.artefacts.strokes],
                    "blur_discs": len(slide.artefacts.blur),
                    "folds": len(slide.artefacts.folds),
                    "bubbles": len(slide.artefacts.bubbles),
                },
            }
        )
    manifest = {
        "format": MANIFEST_FORMAT,
        "seed": spec.seed,
        "width_px": spec.slide.width_px,
        "height_px": spec.slide.height_px,
        "mpp_um_px": spec.slide.mpp_um_px,
        "tile_px": spec.slide.tile_px,
        "jpeg_quality": spec.slide.jpeg_quality,
        "mask_level": MASK_LEVEL,
        "mask_downsample": MASK_DOWNSAMPLE,
        "slides": entries,
    }
    with written_atomically(path) as partial:
        partial.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
