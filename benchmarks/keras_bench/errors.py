"""The payload's exception family; the CLI maps each to an exit code."""


class BenchError(Exception):
    """Root of the errors the payload raises on purpose."""


class SuiteDocumentError(BenchError):
    """The suite document cannot be read or has a malformed field (exit code 2)."""


class ParamError(BenchError):
    """A suite param is unknown, badly typed or out of range (exit code 2)."""


class TerminatedError(BenchError):
    """The process received SIGTERM while a suite was running (exit code 1)."""
