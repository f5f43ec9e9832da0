"""``python -m llmrec.eval CONFIG.yaml [--out DIR]``: same as ``llmrec eval``."""

import sys

from llmrec.cli import main


def eval_main(argv: list[str] | None = None) -> int:
    """``llmrec eval ARGV``: the main CLI's parser and error handling."""
    return main(["eval", *(argv if argv is not None else sys.argv[1:])])


if __name__ == "__main__":
    sys.exit(eval_main())
