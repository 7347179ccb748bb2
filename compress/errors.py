"""The one exception type for bad user input."""


class CompressError(Exception):
    """A user-facing error: the CLI prints `error: <message>` on one line and exits with code 2."""
