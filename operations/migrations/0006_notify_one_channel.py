"""PostgreSQL: one channel for every operation, the operation's id as the payload, on an update
and on a delete. A web process keeps one listener for all its long polls (api/notifications.py)
instead of a LISTEN per waiting request on a channel per operation; a delete wakes them too, so
that a long poll on a deleted operation answers 404 at once. SQLite polls."""

from django.db import migrations

CREATE = """
CREATE OR REPLACE FUNCTION long_task_operation_changed() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('long_task_operation_changed', OLD.id::text);
    ELSE
        PERFORM pg_notify('long_task_operation_changed', NEW.id::text);
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;
DROP TRIGGER IF EXISTS long_task_operation_changed ON operations_operation;
CREATE TRIGGER long_task_operation_changed AFTER UPDATE OR DELETE ON operations_operation
    FOR EACH ROW EXECUTE FUNCTION long_task_operation_changed();
"""
# Back to 0004's trigger: a channel per operation, on an update.
DROP = """
CREATE OR REPLACE FUNCTION long_task_operation_changed() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('long_task_op_' || NEW.id, '');
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;
DROP TRIGGER IF EXISTS long_task_operation_changed ON operations_operation;
CREATE TRIGGER long_task_operation_changed AFTER UPDATE ON operations_operation
    FOR EACH ROW EXECUTE FUNCTION long_task_operation_changed();
"""


def on_postgresql(sql):
    def run(apps, schema_editor):
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.execute(sql)

    return run


class Migration(migrations.Migration):
    dependencies = [("operations", "0005_login_counter")]

    operations = [migrations.RunPython(on_postgresql(CREATE), on_postgresql(DROP))]
