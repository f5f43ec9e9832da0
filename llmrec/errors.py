"""Typed errors. Each message names the item, user, field, file or line that was wrong."""


class LLMRecError(Exception):
    """Base class of every error llmrec raises on purpose."""


class ConfigError(LLMRecError, ValueError):
    """A configuration key or value is wrong."""


class DataError(LLMRecError, ValueError):
    """A catalog or interaction file is malformed, or its counts are not the expected ones."""


class CatalogLineError(DataError):
    """One line of a catalog or interaction file is malformed.

    Attributes:
        path: the file. line: 1-based line number. reason: what is wrong.
    """

    def __init__(self, path, line: int, reason: str):
        self.path, self.line, self.reason = str(path), line, reason
        super().__init__(f"{self.path}:{line}: {reason}")


class ImageError(DataError):
    """An image file cannot be used: missing, not an image, truncated or corrupt, of an unsupported
    mode, or larger than the pixel limit (config ``image_max_pixels``).

    Attributes:
        path: the file. reason: what is wrong.
    """

    def __init__(self, path, reason: str):
        self.path, self.reason = str(path), reason
        super().__init__(f"{self.path}: {reason}")


class AudioError(DataError):
    """An audio file cannot be used: missing, empty, not audio, truncated or corrupt, without
    samples, or (at ingest) silent.

    Attributes:
        path: the file. reason: what is wrong.
    """

    def __init__(self, path, reason: str):
        self.path, self.reason = str(path), reason
        super().__init__(f"{self.path}: {reason}")


class StoreError(LLMRecError, ValueError):
    """A store write or read was refused (duplicate ids, dimension mismatch, missing store)."""


class RequestError(LLMRecError, ValueError):
    """A recommend request is malformed: both or neither of user and history, a history that is
    not a list of item ids, or k not an integer >= 1."""


class UnknownUserError(LLMRecError, KeyError):
    """The user id is not in the store's interactions."""

    def __str__(self) -> str:  # KeyError would quote the message
        return self.args[0] if self.args else "unknown user"


class UnknownItemError(LLMRecError, KeyError):
    """An item id is not in the store."""

    def __str__(self) -> str:
        return self.args[0] if self.args else "unknown item"


class ModelError(LLMRecError, RuntimeError):
    """A model cannot be found, converted or loaded."""


class PromptTooLongError(ModelError):
    """A prompt does not fit the LLM's context window (checked before any forward pass)."""


class StaleRetrieverWarning(UserWarning):
    """The trained retriever was trained on other interactions than the store now holds."""


class IncompleteRetrieverWarning(UserWarning):
    """The trained retriever's folder mixes files of two training runs (one was interrupted):
    item-kNN is used instead until ``llmrec train-retriever`` runs to the end."""
