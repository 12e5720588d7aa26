from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("operations", "0007_resumable_upload"),
        ("operations", "0007_worker_heartbeats"),
    ]

    operations = []
