"""The one exception type users see: a cause and a fix, printed on one line, never a traceback."""

from __future__ import annotations


class UserError(Exception):
    """A problem the user can fix. ``str()`` is one line: ``<cause> — <fix>``.

    ``exit_code`` 2 means bad input (the CLI's contract); 1 means a step failed at run time.
    ``details``: what helps beyond the line (e.g. the last lines of a server's log) — never a traceback: an
    expected error is fully explained by its cause and fix.
    """

    exit_code = 2

    def __init__(self, cause: str, fix: str = "", *, exit_code: int | None = None, details: str = "") -> None:
        self.cause = " ".join(str(cause).split())
        self.fix = " ".join(str(fix).split())
        self.details = details
        if exit_code is not None:
            self.exit_code = exit_code
        super().__init__(self.one_line())

    def one_line(self) -> str:
        return f"{self.cause} — {self.fix}" if self.fix else self.cause


class ModelImportError(UserError):
    """The model given cannot be served (unsupported export, corrupt zip, not an image model...)."""


class ServerError(UserError):
    """The local Triton server could not start, load the model, or answer."""

    exit_code = 1
    http_status: int | None = None     # the HTTP status of a refused request, when there was one
