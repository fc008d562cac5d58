"""Scanning one slide: plan (tissue, blocks), read a block's patches, and the settings of a run.

These are the functions the Ray layer distributes; `inprocess.scan_slides` runs them in one
process for tests, notebooks and debugging.
"""
