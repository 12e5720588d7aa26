from django.db import models

from operations.targets import ImportedRow


class Contact(ImportedRow):
    """A person to keep in touch with. `ImportedRow` adds which import wrote the row and from
    which line (NULL for contacts the application creates itself)."""

    name = models.CharField(max_length=100)
    email = models.EmailField(unique=True, null=True, blank=True)
    phone = models.CharField(max_length=40, blank=True, default="")
    city = models.CharField(max_length=100, blank=True, default="")
    signup_date = models.DateField(null=True, blank=True)
    score = models.IntegerField(null=True, blank=True)

    class Meta(ImportedRow.Meta):
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.name} <{self.email}>" if self.email else self.name
