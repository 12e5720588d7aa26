"""The `contacts` target: each CSV column named like a field fills it (case, spaces, `_` and `-`
aside: "Signup Date" fills signup_date); `name` is required, and `email` is the key (unique in
the table: a second row with an address already there is a row error)."""

from contacts.models import Contact
from operations.targets import Target

CONTACTS = Target(
    "contacts",
    Contact,
    [
        "name",
        "email",
        "phone",
        "city",
        "signup_date",
        "score",
    ],
)
