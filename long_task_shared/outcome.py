"""How following an operation ends, as an exit code: the client's, and `manage.py op_status
--follow`'s. No imports, so that the server side can use it as it is.

    0  completed (or, for a command that does not follow, done)
    1  failed, or refused by the server because of the operation's state (409)
    2  paused or terminated
    3  usage or connection error: bad arguments, server unreachable, not authenticated, bad
       input or unknown operation (400, 401, 403, 404, 413), unexpected server answer
  130  interrupted: a second Ctrl-C while following stops waiting for the pause it asked for
"""

COMPLETED = 0
FAILED = 1
REFUSED = 1
STOPPED = 2
USAGE = 3
INTERRUPTED = 130

# Where following ends: the states that do not move without somebody's request.
END_STATES = {"completed": COMPLETED, "failed": FAILED, "paused": STOPPED, "terminated": STOPPED}


def exit_code(state: str) -> int | None:
    """The exit code for an operation in `state`, or None while it may still move by itself."""
    return END_STATES.get(state)
