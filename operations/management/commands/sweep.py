"""`manage.py sweep`: delete orphaned temporary uploads, expired resumable uploads and files past
their retention."""

from django.core.management.base import BaseCommand

from operations import retention


class Command(BaseCommand):
    help = (
        "Delete orphaned temporary uploads, resumable uploads past LONG_TASK_UPLOAD_EXPIRY and stored files "
        "past LONG_TASK_RETENTION_DAYS."
    )

    def handle(self, *args, **options):
        swept = retention.sweep()
        self.stdout.write(
            f"{swept.temporary_files} temporary uploads, {swept.stored_files} stored files and "
            f"{swept.expired_uploads} expired resumable uploads deleted"
        )
