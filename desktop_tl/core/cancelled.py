"""The one exception for work that was asked to stop.

Checking the data, extracting features and a whole run all take a ``should_stop``
callable or a Cancel command; each raises :class:`Cancelled` when asked, so a caller that
starts any of them catches one exception, and a run that is cancelled while it checks its
data or builds its cache ends as ``cancelled`` like one stopped between batches.
"""


class Cancelled(Exception):
    """Asked to stop (Stop, a Cancel command, ``should_stop()``); nothing half-made is kept."""
