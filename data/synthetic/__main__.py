"""``python -m data.synthetic``."""
import sys

from data.synthetic.command import main

sys.exit(main())
