"""The e-mail check of a target import's cells: Django's EmailValidator, with a quicker way to
the same verdict for the common address (SPEC §13)."""

import re
from collections.abc import Callable

from django.core import validators as django_validators

# An e-mail address's user part in its common form, a dot-atom of ASCII letters, digits and the
# specials: EmailValidator's user pattern accepts it (that pattern also takes other letters, under
# re.IGNORECASE, and quoted parts), and a case-sensitive pattern matches it quicker.
_ATOM = r"[-!#$%&'*+/=?^_`{}|~0-9A-Za-z]+"
_dot_atom = re.compile(rf"{_ATOM}(?:\.{_ATOM})*").fullmatch
DOMAINS_KEPT = 10_000  # the e-mail domains whose verdict a conversion remembers
MOST_CHARACTERS = 320  # EmailValidator's own limit


def quick_check(validator) -> Callable[[object], None]:
    """`validator`, or for Django's EmailValidator a quicker check with the same verdict: an
    address whose two parts match the validator's own patterns is what it accepts; any other
    goes to the validator itself (internationalized domains, IP literals, refusals). The
    patterns are read once here: each use of them through the validator costs a lazy object's
    indirection, which made the validation half of a contacts row's conversion. A user part
    that is a plain dot-atom is matched by a simpler pattern first, and the domain's verdict is
    remembered: a file's addresses share a few domains, whose pattern took most of the rest."""
    if type(validator) is not django_validators.EmailValidator:
        return validator
    user_match, domain_match = validator.user_regex.match, validator.domain_regex.match
    domains: dict[str, bool] = {}

    def domain_ok(domain: str) -> bool:
        if len(domains) >= DOMAINS_KEPT:
            domains.clear()
        ok = domains[domain] = domain_match(domain) is not None
        return ok

    def check(value: str) -> None:
        user, at, domain = value.rpartition("@")  # one call for the look for "@" and the split
        if at and len(value) <= MOST_CHARACTERS and (_dot_atom(user) or user_match(user)):
            ok = domains.get(domain)
            if ok or (ok is None and domain_ok(domain)):
                return
        validator(value)

    # What an import's row code may spell out (targets/rows.py): an address of at most
    # MOST_CHARACTERS whose user part is a dot-atom and whose domain is known good passes.
    check.passes_at_once = (_dot_atom, domains)
    return check
