"""The list's filter by creation date: Django's links (today, past 7 days, this month, this
year) and a range of days, from and to (both included, in the server's time zone)."""

import datetime

from django.contrib import admin
from django.contrib.admin.options import IncorrectLookupParameters
from django.utils import timezone

FROM, TO = "created_from", "created_to"


def day(text: str) -> datetime.date | None:
    """A day written YYYY-MM-DD (a date input's value); None when empty."""
    if not text:
        return None
    try:
        return datetime.date.fromisoformat(text)
    except ValueError:
        # The list answers as it does for any filter it cannot apply (its "?e=1" page).
        raise IncorrectLookupParameters(f"{text!r} is not a day (YYYY-MM-DD)") from None


def local_midnight(of: datetime.date) -> datetime.datetime:
    return timezone.make_aware(datetime.datetime.combine(of, datetime.time.min))


class CreatedFilter(admin.DateFieldListFilter):
    template = "admin/operations/operation/created_filter.html"

    def __init__(self, field, request, params, model, model_admin, field_path):
        # The range's own parameters, taken before Django's filter reads the rest.
        self.range = {name: (params.pop(name, None) or [""])[-1] for name in (FROM, TO)}
        self.days = {name: day(text) for name, text in self.range.items()}
        # What the range's form sends along with its days: the list's other parameters.
        ours = {FROM, TO, f"{field_path}__gte", f"{field_path}__lt", "p"}
        self.kept = [(key, value) for key, value in request.GET.items() if key not in ours]
        super().__init__(field, request, params, model, model_admin, field_path)
        self.title = "created"

    def has_output(self) -> bool:
        return True

    def expected_parameters(self) -> list[str]:
        return [*super().expected_parameters(), FROM, TO]

    def queryset(self, request, queryset):
        queryset = super().queryset(request, queryset)
        if self.days[FROM]:
            queryset = queryset.filter(created_at__gte=local_midnight(self.days[FROM]))
        if self.days[TO]:
            queryset = queryset.filter(created_at__lt=local_midnight(self.days[TO] + datetime.timedelta(days=1)))
        return queryset

    def choices(self, changelist):
        ranged = any(self.range.values())
        for (_, params), choice in zip(self.links, super().choices(changelist), strict=True):
            # With a range set, none of the links is what the list shows; a link drops the range.
            link = {key: str(value) for key, value in params.items()}
            choice["query_string"] = changelist.get_query_string(link, [self.field_generic, FROM, TO])
            choice["selected"] = choice["selected"] and not ranged
            yield choice
