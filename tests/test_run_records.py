"""Run records: `diagnose` and `evaluate` append one JSON document per run to the store
(`runs/`), `history` prints them, a version-1 store opens with an empty history, concurrent
appends never lose a record, a damaged record hides no other; a scan's record and summary.md
come from the in-process scan of tests/test_store_format.py's committed slide."""

from __future__ import annotations

import io
import json
import shutil
import threading
from pathlib import Path

import pytest

from pcam_scan.cli import main
from pcam_scan.store.location import StoreLocation
from pcam_scan.store.run_records import append_run_record, new_record, read_run_records, summary_location
from pcam_scan.store.schema import ATTRIBUTES, FORMAT_VERSION, Node, RunRecord, SlideAttempt
from tests.scanned_store import build_store

FIXTURE = Path(__file__).parent / "data" / "store-v1"


@pytest.fixture(scope="module")
def clean_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path, _ = build_store(tmp_path_factory.mktemp("runs"), tumour_seeds=(7,), normal_seeds=(3,))
    return path


@pytest.fixture
def store(tmp_path: Path, clean_store: Path) -> Path:
    target = tmp_path / "run.zarr"
    shutil.copytree(clean_store, target)
    return target


def test_a_version_1_store_opens_with_an_empty_history(capsys: pytest.CaptureFixture[str]) -> None:
    assert FORMAT_VERSION == 3
    assert main(["history", str(FIXTURE / "store")]) == 0
    assert "no runs recorded" in capsys.readouterr().out


def test_diagnose_records_its_run_and_history_prints_it(
    store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["diagnose", str(store), "--out", str(tmp_path / "d.csv")]) == 0
    assert main(["diagnose", str(store), "--out", str(tmp_path / "d.csv"), "--overwrite"]) == 0
    records = read_run_records(StoreLocation(str(store)))
    assert len(records) == 2 and all(isinstance(r, RunRecord) for r in records)
    first = records[0]
    assert isinstance(first, RunRecord)
    assert first.command == "diagnose" and first.exit_code == 0
    assert first.arguments["out"] == str(tmp_path / "d.csv") and "func" not in first.arguments
    assert sorted(a.slide_id for a in first.attempts) == ["normal_001", "tumor_001"]
    assert first.failed == 0 and first.started <= first.ended and "numpy" in first.versions
    doc = json.loads(next((store / "runs").glob("*.json")).read_text())
    assert doc["run_record"]["slides"] == {"attempted": 2, "completed": 2, "failed": 0}
    written: set[str] = set()

    def walk(prefix: str, value: object) -> None:
        items = value[0] if isinstance(value, list) and value else value
        if isinstance(items, dict):
            for key, child in items.items():
                written.add(prefix + key)
                if key not in ("arguments", "versions"):  # free-form: their own names inside
                    walk(f"{prefix}{key}.", child)

    walk("", doc)
    assert written == {spec.path for spec in ATTRIBUTES if spec.node is Node.RUN}  # every key declared
    capsys.readouterr()
    assert main(["history", str(store), "--slides"]) == 0
    out = capsys.readouterr().out
    assert out.count("  diagnose  exit 0") == 2 and "tumor_001: diagnosed" in out
    # slides are still exactly the slides: runs/ is no Zarr node
    assert main(["diagnose", str(store), "--out", str(tmp_path / "e.csv")]) == 0
    assert "runs" not in capsys.readouterr().out


def test_evaluate_records_its_run(store: Path, tmp_path: Path) -> None:
    patients = tmp_path / "patients.csv"
    patients.write_text("slide_id,patient,node\ntumor_001,A,0\nnormal_001,A,1\n", encoding="utf-8")
    stages = tmp_path / "stages.csv"
    stages.write_text("A.zip,pN1\n", encoding="utf-8")
    argv = ["evaluate", str(store), "--patients", str(patients), "--stages", str(stages), "--out", str(tmp_path / "e")]
    main([*argv, "--bootstrap", "100"])
    (record,) = read_run_records(StoreLocation(str(store)))
    assert isinstance(record, RunRecord) and record.command == "evaluate"
    assert {a.slide_id: a.state for a in record.attempts} == {"tumor_001": "staged", "normal_001": "staged"}


def test_concurrent_appends_lose_nothing_and_a_bad_record_hides_no_other(store: Path) -> None:
    location = StoreLocation(str(store))
    record = new_record(
        "scan", {"slides": ["a.tif"]}, "2026-01-01T00:00:00+00:00", 1, [SlideAttempt("a", "failed", "x")]
    )
    threads = [threading.Thread(target=append_run_record, args=(location, record)) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    (store / "runs" / "00000000000000-zz-1-bad.json").write_text("{not json", encoding="utf-8")
    records = read_run_records(location)
    assert sum(isinstance(r, RunRecord) for r in records) == 16
    (bad,) = [r for r in records if isinstance(r, str)]
    assert "unreadable run record" in bad and "bad.json" in bad
    assert all(r.failed == 1 for r in records if isinstance(r, RunRecord))


def test_runs_that_start_within_one_second_list_in_the_order_they_ran(store: Path) -> None:
    """A script's back-to-back commands start within one second; `history` lists them oldest
    first all the same (the names sort by the start second, then by when each was written)."""
    location = StoreLocation(str(store))
    same_second = "2026-01-01T00:00:00+00:00"
    for exit_code in range(12):
        append_run_record(location, new_record("diagnose", {}, same_second, exit_code, []))
    records = read_run_records(location)
    assert [r.exit_code for r in records if isinstance(r, RunRecord)] == list(range(12))


def test_scan_records_its_run_and_writes_a_summary_beside_the_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    slide = tmp_path / "tumor_001.tif"
    shutil.copyfile(FIXTURE / "tumor_001.tif", slide)
    missing = tmp_path / "normal_404.tif"
    missing.write_bytes(b"not a slide")
    out = tmp_path / "run.zarr"
    argv = ["scan", str(slide), str(missing), "--model", str(FIXTURE / "tiny.safetensors"), "--store", str(out)]
    assert main([*argv, "--in-process"]) == 1
    (record,) = read_run_records(StoreLocation(str(out)))
    assert isinstance(record, RunRecord) and record.command == "scan" and record.exit_code == 1
    states = {a.slide_id: a for a in record.attempts}
    assert states["tumor_001"].state == "complete" and states["normal_404"].state == "failed"
    assert states["normal_404"].message
    summary = Path(summary_location(StoreLocation(str(out))))
    assert summary == tmp_path / "run.zarr.summary.md"
    text = summary.read_text()
    assert "1 completed, 1 failed" in text and "normal_404" in text


def test_a_scan_that_raises_still_records_its_run_as_failed_with_its_message(
    tmp_path: Path, synth_dataset: Path, tiny_checkpoint: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The store exists and holds other settings' results: the second scan is refused (exit 2)
    once it has opened the store, and its record says so, with the same line as the CLI."""
    store = tmp_path / "run.zarr"
    argv = ["scan", str(synth_dataset / "normal_001.tif"), "--model", str(tiny_checkpoint), "--store", str(store)]
    argv += ["--in-process", "--device", "cpu"]
    assert main([*argv, "--block-cells", "16"]) == 0
    capsys.readouterr()
    assert main([*argv, "--block-cells", "8"]) == 2
    error_line = capsys.readouterr().err.strip().removeprefix("pcam-scan: error: ")
    records = read_run_records(StoreLocation(str(store)))
    assert [(r.command, r.outcome, r.exit_code) for r in records if isinstance(r, RunRecord)] == [
        ("scan", "completed", 0),
        ("scan", "failed", 2),
    ]
    failed = records[1]
    assert isinstance(failed, RunRecord) and failed.message == error_line and failed.attempts == ()
    assert failed.arguments["block_cells"] == 8 and failed.started <= failed.ended
    assert main(["history", str(store)]) == 0
    assert f"failed: {error_line}" in capsys.readouterr().out


def test_a_run_record_without_an_outcome_reads_as_completed() -> None:
    """The first version-2 records had no `outcome` or `message`: they still read."""
    record = new_record("diagnose", {}, "2026-01-01T00:00:00+00:00", 0, [SlideAttempt("a", "diagnosed")])
    doc = record.to_json()
    body = doc["run_record"]
    assert isinstance(body, dict)
    del body["outcome"], body["message"]
    assert RunRecord.from_json(doc) == record


def test_a_run_stopped_by_sigterm_on_ray_is_recorded_as_terminated() -> None:
    """Ray's driver turns SIGTERM into SystemExit(15), not the CLI's Terminated: the record and
    the exit code say terminated all the same."""
    import signal

    from pcam_scan.cli import EXIT_TERMINATED, failure_of
    from pcam_scan.errors import Terminated

    assert (
        failure_of(SystemExit(signal.SIGTERM)) == failure_of(Terminated()) == (EXIT_TERMINATED, "terminated (SIGTERM)")
    )
    assert failure_of(KeyboardInterrupt()) == (130, "interrupted")


def test_a_scan_stopped_midway_records_each_slide_attempted_completed_failed_or_unfinished(
    tmp_path: Path, synth_dataset: Path, tiny_checkpoint: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A real in-process scan of three slides (one not a slide at all) is interrupted (Ctrl-C,
    raised by its progress hook) as its second slide settles: its record still lists all three,
    the bad one failed with its message, one completed, one unfinished; `history` prints them."""
    from pcam_scan.cli import failure_of
    from pcam_scan.scan.inprocess import in_process_executor
    from pcam_scan.scan.outcome import UNFINISHED_STATE, ScanLedger
    from pcam_scan.scan.progress import ScanProgress
    from pcam_scan.scan.runner import Placement, ScanRequest, run_scan
    from pcam_scan.scan.settings import ScanSettings
    from pcam_scan.store.run_records import recorded_if_raised, utc_now
    from pcam_scan.store.schema import RUN_ATTEMPTED, RUN_COMPLETED, RUN_FAILED, RUN_RECORD, RUN_SLIDES

    class StopAtSecondSlide(ScanProgress):
        def slide_done(self) -> None:
            super().slide_done()
            if self.slides_done == 2:
                raise KeyboardInterrupt

    bad = tmp_path / "not_a_slide.tif"
    bad.write_bytes(b"II*\x00 this is no TIFF")
    slides = (str(synth_dataset / "normal_001.tif"), str(bad), str(synth_dataset / "tumor_001.tif"))
    store = tmp_path / "run.zarr"
    request = ScanRequest(
        slides, str(tiny_checkpoint), str(store), ScanSettings(block_cells=8), Placement(num_cpus=1, in_process=True)
    )
    ledger = ScanLedger()
    with pytest.raises(KeyboardInterrupt):
        with recorded_if_raised(str(store), "scan", {"slides": slides}, utc_now(), failure_of, ledger.attempts):
            run_scan(request, in_process_executor, StopAtSecondSlide(stream=io.StringIO()), ledger)
    (record,) = read_run_records(StoreLocation(str(store)))
    assert isinstance(record, RunRecord) and (record.outcome, record.exit_code) == ("interrupted", 130)
    by_slide = {a.slide_id: a for a in record.attempts}
    assert sorted(by_slide) == ["normal_001", "not_a_slide", "tumor_001"]
    assert by_slide["not_a_slide"].state == "failed" and by_slide["not_a_slide"].message
    states = sorted(by_slide[s].state for s in ("normal_001", "tumor_001"))
    assert states == sorted(["complete", UNFINISHED_STATE]), states
    assert record.failed == 2  # the failed slide and the unfinished one
    counts = record.to_json()[RUN_RECORD.key][RUN_SLIDES.key]  # type: ignore[index]
    assert counts == {RUN_ATTEMPTED.key: 3, RUN_COMPLETED.key: 1, RUN_FAILED.key: 2}
    assert main(["history", str(store)]) == 0
    out = capsys.readouterr().out
    assert "3 attempted, 1 completed, 2 failed" in out and f"{UNFINISHED_STATE}: the run stopped" in out
