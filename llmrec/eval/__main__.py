"""``python -m llmrec.eval CONFIG.yaml [--out DIR]``: same as ``llmrec eval``."""

import sys

from llmrec.eval.cli import main

sys.exit(main())
