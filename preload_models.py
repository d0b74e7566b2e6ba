#!/usr/bin/env python3
"""Download every model the chosen profile needs, before the first start.

The same as `enfoads preload` (all its options work here):

    python preload_models.py                      # the profile of this machine (auto)
    python preload_models.py --profile t4 --only image,faces --dry-run

The work is done by `enfoads.models.preload`: pinned, resumable, verified, recorded
in the models dir's manifest; a second run downloads nothing.
"""
import sys

from enfoads.cli import main

if __name__ == "__main__":
    sys.exit(main(["preload", *sys.argv[1:]]))
