"""The model: architectures, checkpoint format and metadata, patch scoring, the predictor, and the
random model for tests and benchmarks.

Importing this package imports no torch; `names` holds what parsers need without it.
"""
