"""The base of every error whose message is written for the person using the app.

The CLI prints such an error as one line on stderr and exits non-zero; the GUI shows it
in the panel it concerns. Anything else is a bug and keeps its traceback.
"""


class UserError(Exception):
    """Something the user can fix; the message says what is wrong and what to do."""
