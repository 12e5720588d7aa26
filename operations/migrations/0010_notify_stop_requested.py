"""PostgreSQL: NOTIFY long_task_stop_requested with the operation's id when its state becomes
pausing or terminating, so that the worker writing one of its chunks cancels it at once
(operations/stop_requests.py). A channel of its own: the workers hear no checkpoint."""

from django.db import migrations

from operations.migrations import _postgresql

CREATE = """
CREATE OR REPLACE FUNCTION long_task_stop_requested() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('long_task_stop_requested', NEW.id::text);
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;
DROP TRIGGER IF EXISTS long_task_stop_requested ON operations_operation;
CREATE TRIGGER long_task_stop_requested AFTER UPDATE OF state ON operations_operation
    FOR EACH ROW
    WHEN (NEW.state IN ('pausing', 'terminating') AND OLD.state IS DISTINCT FROM NEW.state)
    EXECUTE FUNCTION long_task_stop_requested();
"""
DROP = """
DROP TRIGGER IF EXISTS long_task_stop_requested ON operations_operation;
DROP FUNCTION IF EXISTS long_task_stop_requested();
"""


class Migration(migrations.Migration):
    dependencies = [("operations", "0009_merge_dry_run_keys")]

    operations = [migrations.RunPython(_postgresql.run(CREATE), _postgresql.run(DROP))]
