"""Who may see and act on which operation (SPEC §8), through Django permissions, the same rule
for the API, the admin and the command line.

- Everyone sees and controls their own operations (anonymous requests, when allowed: those
  without an owner).
- `operations.view_operation` (Django's own) also lets a user see everyone's operations.
- `operations.control_any_operation` lets a user see and act on everyone's operations.

Being staff grants nothing by itself; a superuser has every permission. Another user's
operation that a user may not see answers exactly like a missing one (404); one the user may
see but not act on answers 403.

An operation's file (an Upload's input, an Export's result) is the data itself, not how the
work goes: only its owner downloads it (SPEC §9), through the API and the console alike. Those
who see or control everyone's operations see and act on it, never read its data (403).
"""

VIEW_ANY = "operations.view_operation"
CONTROL_ANY = "operations.control_any_operation"


def _authenticated(user) -> bool:
    return user is not None and user.is_authenticated


def sees_all(user) -> bool:
    return _authenticated(user) and (user.has_perm(VIEW_ANY) or user.has_perm(CONTROL_ANY))


def controls_all(user) -> bool:
    return _authenticated(user) and user.has_perm(CONTROL_ANY)


def owns(user, op) -> bool:
    if not _authenticated(user):
        return op.owner_id is None
    return op.owner_id == user.pk


def can_see(user, op) -> bool:
    # Owners first: the common case costs no permission lookup.
    return owns(user, op) or sees_all(user)


def can_control(user, op) -> bool:
    return owns(user, op) or controls_all(user)


def can_download(user, op) -> bool:
    return owns(user, op)
