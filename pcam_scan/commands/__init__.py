"""One module per `pcam-scan` subcommand; each exposes `register(subparsers)`.

A command module imports its heavy dependencies inside its handler, so `pcam-scan --help` stays
fast and the core never imports ray or fastai at import time.
"""
