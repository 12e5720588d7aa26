"""What the migrations that only concern PostgreSQL (triggers, notifications) share. The
leading underscore keeps Django's migration loader from taking this for a migration."""


def run(sql: str):
    """A RunPython function that executes `sql` on PostgreSQL and does nothing elsewhere."""

    def run_sql(apps, schema_editor):
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.execute(sql)

    return run_sql
