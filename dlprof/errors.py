"""Errors whose message is a complete, one-line explanation for the user (CLI exit code 2)."""


class DlprofError(Exception):
    """A problem with the user's input; the CLI prints ``dlprof: error: <message>``.

    ``log``: a file with the details (a trial's output, tracebacks included), shown by --debug.
    """

    def __init__(self, message: str, log: str | None = None) -> None:
        super().__init__(message)
        self.log = log


class ScanFailed(DlprofError):
    """The target loads but every configuration tried failed (CLI exit code 1, results kept)."""
