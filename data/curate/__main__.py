"""``python -m data.curate``."""
import sys

from data.curate.command import main

sys.exit(main())
