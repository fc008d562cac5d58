"""Execution on Ray: planning, the streaming read -> predict -> write pipeline, job submission.

This is the only package that imports ray; it distributes the functions of `pcam_scan`.
"""
