"""``python -m data.features``."""
import sys

from data.features.command import main

sys.exit(main())
