"""PostgreSQL: NOTIFY long_task_op_<id> whenever an operation's row changes, so that a client
waiting for a change (`wait_for_change`) wakes at once without polling. SQLite polls."""

from django.db import migrations

CREATE = """
CREATE OR REPLACE FUNCTION long_task_operation_changed() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('long_task_op_' || NEW.id, '');
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER long_task_operation_changed AFTER UPDATE ON operations_operation
    FOR EACH ROW EXECUTE FUNCTION long_task_operation_changed();
"""
DROP = """
DROP TRIGGER IF EXISTS long_task_operation_changed ON operations_operation;
DROP FUNCTION IF EXISTS long_task_operation_changed();
"""


def on_postgresql(sql):
    def run(apps, schema_editor):
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.execute(sql)

    return run


class Migration(migrations.Migration):
    dependencies = [("operations", "0003_control_any_operation")]

    operations = [migrations.RunPython(on_postgresql(CREATE), on_postgresql(DROP))]
