"""The one exception type users see: a one-line message, printed without a traceback by the CLI."""


class MnistbenchError(Exception):
    """A problem the user can fix (bad params, missing input, unreachable data); the message says what."""
