"""Scanning slides: plan (tissue, blocks), read a block's region, and drive a batch.

`batch.scan_batch` drives a batch on any executor; `runner.run_scan` resolves a request and runs
it on the executor its caller chose: `inprocess.in_process_executor` (tests, notebooks,
debugging) or `cluster.executor.ray_executor`, which distributes the same functions on Ray.
"""
