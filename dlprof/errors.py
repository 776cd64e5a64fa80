"""Errors whose message is a complete, one-line explanation for the user (CLI exit code 2)."""


class DlprofError(Exception):
    """A problem with the user's input; the CLI prints ``dlprof: error: <message>``."""
