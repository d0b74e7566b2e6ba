import sys

from enfoads.cli import main

sys.exit(main())
