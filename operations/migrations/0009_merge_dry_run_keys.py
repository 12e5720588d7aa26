from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("operations", "0007_dry_run_keys"),
        ("operations", "0008_merge_uploads_and_heartbeats"),
    ]

    operations = []
