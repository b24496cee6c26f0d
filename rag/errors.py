"""Errors whose messages say what to do next; the CLI turns them into one line and an exit code."""


class RagError(Exception):
    """Base of every error the library raises on purpose."""

    exit_code = 1
    for_user = True  # whether the message may be shown to a chat user as it is


class ConfigError(RagError):
    """A setting is missing or invalid."""

    exit_code = 2


class LoadError(RagError):
    """One file could not be read; the run goes on without it."""


class IndexMismatchError(RagError):
    """The index on disk was built with other settings than the ones in force."""

    exit_code = 3


class IndexBusyError(RagError):
    """Another process is writing to the index."""

    exit_code = 4


class ModelError(RagError):
    """A model file is missing, corrupt or cannot be loaded, or the model failed a request."""

    exit_code = 5
    for_user = False  # the message may quote a runtime's internals: logged for the operator, not shown in a chat


class ModelTimeoutError(ModelError, TimeoutError):
    """The model did not finish a request in time (our own message: safe to show)."""

    for_user = True


class InputError(RagError):
    """Input from a user that cannot be taken as given: an empty or over-long question, a bad upload."""

    exit_code = 2
