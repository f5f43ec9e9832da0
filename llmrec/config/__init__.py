"""The one configuration object: :class:`Config` (``llmrec.config.core``), its groups
(``llmrec.config.groups``, ``llmrec.config.training``) and the sources :meth:`Config.load` reads
(``llmrec.config.sources``). Imports only ``llmrec.errors`` from llmrec: every stage may import it."""

from llmrec.config._types import REPO_ROOT, SECRET_MASK
from llmrec.config.core import Config, flat_keys, secret_keys

__all__ = ["REPO_ROOT", "SECRET_MASK", "Config", "flat_keys", "secret_keys"]
