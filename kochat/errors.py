"""The one error a user sees: a problem with their input or machine, printed as one line (exit status 2).

Library modules raise it with a sentence that says what to do; `cli.run` turns it into that line."""


class UserError(Exception):
    """A problem with the user's input or machine. Printed as one line; the program exits with 2."""
