"""The project's error types.

Every error a user can cause (a path, a flag, a file, a checkpoint) is raised as a subclass of
`MnistJaxError` with a message that says what is wrong and what to do; the command-line tools print
that message on one line and exit with status 2. Bugs stay ordinary Python exceptions.
"""


class MnistJaxError(Exception):
    """Base class of every error a user can cause and fix."""


class ConfigError(MnistJaxError, ValueError):
    """An invalid configuration value (a flag, a config file entry)."""


class DataError(MnistJaxError):
    """Dataset files that are missing, truncated, corrupt or mismatched, or cannot be fetched."""


class TrainingError(MnistJaxError):
    """Training cannot go on, e.g. the loss became NaN or infinite."""


class CheckpointError(MnistJaxError):
    """A checkpoint or run directory that is missing, damaged or incompatible."""


class OutputError(MnistJaxError):
    """A file or folder that cannot be written (disk full, read-only, removed).

    `path` is what was being written and `errno` the operating system's error number, when the
    raiser knows them (`mnist_jax.fileio` always sets both); otherwise None.
    """

    def __init__(self, message: str, *, path: str | None = None, errno: int | None = None):
        super().__init__(message)
        self.path = path
        self.errno = errno


def one_line(error: BaseException) -> str:
    """An exception as one short line ("Type: first line", at most 200 characters), for messages
    that quote a library's error."""
    text = (
        f"{type(error).__name__}: {error}".splitlines()[0] if str(error) else type(error).__name__
    )
    return text if len(text) <= 200 else text[:197] + "..."
