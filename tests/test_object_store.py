"""Heatmap stores on an object store: real scans into s3:// URLs on a real S3-compatible server
(moto's server mode on 127.0.0.1), in process and on a local Ray, equal to a local-store scan.

The endpoint and credentials reach zarr/s3fs the way they reach any boto client: through
AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in the environment. The local Ray
started by the scan inherits them, as the pods of deploy/kuberay/ get them from a Secret.
"""

from __future__ import annotations

from pathlib import Path

import boto3
import numpy as np
import pytest

from pcam_scan.cli import main
from pcam_scan.store import HeatmapStore
from pcam_scan.store.schema import SlideState

SLIDE_IDS = ("tumor_001", "normal_001")


@pytest.fixture(scope="module")
def slides(synth_dataset: Path) -> list[str]:
    return [str(synth_dataset / f"{slide_id}.tif") for slide_id in SLIDE_IDS]


def scan(slides: list[str], model: Path, store: str, *extra: str) -> int:
    return main(["scan", *slides, "--model", str(model), "--store", store, "--block-cells", "16", *extra])


@pytest.fixture(scope="module")
def local_store(slides: list[str], tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> HeatmapStore:
    """The reference: the same scan into a local directory."""
    path = tmp_path_factory.mktemp("local") / "run.zarr"
    assert scan(slides, tiny_checkpoint, str(path), "--in-process") == 0
    return HeatmapStore.open(str(path))


@pytest.fixture(scope="module")
def in_process_url(s3_bucket: str, slides: list[str], tiny_checkpoint: Path) -> str:
    url = f"s3://{s3_bucket}/in-process/run.zarr"
    assert scan(slides, tiny_checkpoint, url, "--in-process") == 0
    return url


def object_keys(bucket: str, prefix: str) -> set[str]:
    pages = boto3.client("s3").get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return {item["Key"] for page in pages for item in page.get("Contents", [])}


def assert_same_slide(store: HeatmapStore, reference: HeatmapStore, slide_id: str) -> None:
    status = store.slide_status(slide_id)
    assert status is not None and status.state is SlideState.COMPLETE
    levels = store.prob_level_shapes(slide_id)
    assert levels == reference.prob_level_shapes(slide_id)
    for level in range(len(levels)):
        np.testing.assert_array_equal(store.read_prob(slide_id, level), reference.read_prob(slide_id, level))
    np.testing.assert_array_equal(store.read_tissue(slide_id), reference.read_tissue(slide_id))
    assert store.stored_slide(slide_id).counts == reference.stored_slide(slide_id).counts


def test_in_process_scan_into_s3_equals_a_local_scan(
    s3_bucket: str, in_process_url: str, local_store: HeatmapStore
) -> None:
    keys = object_keys(s3_bucket, "in-process/run.zarr/")
    # the heatmaps really are objects on the server: root and slide metadata, prob chunks
    assert "in-process/run.zarr/zarr.json" in keys
    for slide_id in SLIDE_IDS:
        assert f"in-process/run.zarr/{slide_id}/zarr.json" in keys
        assert any(k.startswith(f"in-process/run.zarr/{slide_id}/prob/0/c/") for k in keys)
    store = HeatmapStore.open(in_process_url)
    assert set(store.list_slides()) == set(SLIDE_IDS)
    for slide_id in SLIDE_IDS:
        assert_same_slide(store, local_store, slide_id)


def test_an_s3_scan_records_its_run_and_writes_its_summary_inside(s3_bucket: str, in_process_url: str) -> None:
    from pcam_scan.store.location import StoreLocation
    from pcam_scan.store.run_records import read_run_records
    from pcam_scan.store.schema import RunRecord

    keys = object_keys(s3_bucket, "in-process/run.zarr/")
    assert "in-process/run.zarr/summary.md" in keys  # no folder "beside" an object-store prefix
    assert any(k.startswith("in-process/run.zarr/runs/") and k.endswith(".json") for k in keys)
    records = read_run_records(StoreLocation(in_process_url))
    assert records and all(isinstance(r, RunRecord) and r.command == "scan" for r in records)
    first = records[0]
    assert isinstance(first, RunRecord) and {a.slide_id for a in first.attempts} == set(SLIDE_IDS)


def test_scanning_an_s3_store_again_skips_its_complete_slides(
    in_process_url: str, slides: list[str], tiny_checkpoint: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    assert scan(slides, tiny_checkpoint, in_process_url, "--in-process") == 0
    assert capsys.readouterr().out.count("already complete") == len(SLIDE_IDS)


def test_ray_scan_into_s3_equals_a_local_scan(
    s3_bucket: str, slides: list[str], tiny_checkpoint: Path, local_store: HeatmapStore
) -> None:
    url = f"s3://{s3_bucket}/ray/run.zarr"
    # reads, model actors and chunk writes run in Ray worker processes, which open the store
    # themselves from the URL and the inherited environment
    assert scan(slides[:1], tiny_checkpoint, url, "--num-cpus", "2") == 0
    store = HeatmapStore.open(url)
    assert store.list_slides() == [SLIDE_IDS[0]]
    assert_same_slide(store, local_store, SLIDE_IDS[0])


def test_a_missing_bucket_is_one_error_line(
    s3_bucket: str, slides: list[str], tiny_checkpoint: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = "s3://no-such-bucket-pcam/run.zarr"
    capsys.readouterr()
    assert scan(slides[:1], tiny_checkpoint, url, "--in-process") == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("pcam-scan: error:") and "\n" not in err and url in err
