"""Scanning slides: plan (tissue, blocks), read a block's region, and drive a batch.

`driver.scan_slides` drives a run's slides on any executor; `runner.run_scan` resolves a request
(`settings.ScanRun`, once) and runs
it on the executor its caller chose: `inprocess.in_process_executor` (tests, notebooks,
debugging) or `cluster.executor.ray_executor`, which distributes the same functions on Ray.
"""
