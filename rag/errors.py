"""Errors whose messages say what to do next; the CLI turns them into one line and an exit code."""


class RagError(Exception):
    """Base of every error the library raises on purpose."""

    exit_code = 1
    for_user = True  # whether the message may be shown to a chat user as it is
    told_user: str | None = None  # what a chat user is told instead, when not


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


class StoreUnavailableError(RagError):
    """A service holding the index (a Chroma server, the record database) does not answer; nothing was changed
    that a later run cannot finish."""

    exit_code = 6
    for_user = False  # names internal addresses: logged for the operator
    told_user = (
        "The document index is unavailable right now (a server it needs does not answer). Please try again in a moment."
    )


class ConversationsUnavailableError(RagError):
    """The database of the chat's saved conversations does not answer; the answers themselves go on."""

    exit_code = 6
    for_user = False  # names an internal address: logged for the operator
    told_user = (
        "This conversation could not be saved: the saved conversations are unavailable right now. "
        "Please try again in a moment."
    )
