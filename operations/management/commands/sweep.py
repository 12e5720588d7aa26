"""`manage.py sweep`: delete orphaned temporary uploads and files past their retention."""

from django.core.management.base import BaseCommand

from operations import retention


class Command(BaseCommand):
    help = "Delete orphaned temporary uploads and stored files past LONG_TASK_RETENTION_DAYS."

    def handle(self, *args, **options):
        swept = retention.sweep()
        self.stdout.write(f"{swept.temporary_files} temporary uploads and {swept.stored_files} stored files deleted")
