"""The status object of SPEC §5 (also the REST detail), events and row errors."""

from rest_framework import serializers

from operations import selectors
from operations.models import Operation, OperationEvent, RowError


class RowVerdictSerializer(serializers.Serializer):
    line_number = serializers.IntegerField()
    reason = serializers.CharField()
    raw = serializers.CharField()


class DryRunSerializer(serializers.Serializer):
    """What a dry run found (only in the status of a dry run)."""

    accepted = serializers.IntegerField()
    rejected = serializers.IntegerField()
    rejected_by_reason = serializers.DictField(child=serializers.IntegerField())
    first_errors = RowVerdictSerializer(many=True)
    import_operation = serializers.IntegerField(allow_null=True, help_text="The operation that imported its file.")


class OperationSerializer(serializers.ModelSerializer):
    """The status object. It renders through `selectors.operation_status`, which builds the
    same fields without DRF's per-field machinery (clients poll it)."""

    op_id = serializers.IntegerField(source="pk", read_only=True)
    is_finished = serializers.BooleanField(read_only=True)
    is_paused = serializers.BooleanField(read_only=True)
    is_terminated = serializers.BooleanField(read_only=True)
    percent = serializers.FloatField(read_only=True, allow_null=True)
    rows_per_second = serializers.FloatField(read_only=True, allow_null=True)
    eta_seconds = serializers.FloatField(read_only=True, allow_null=True)
    # Not read-only, so that the schema does not mark it required: a status has it only for a dry run.
    dry_run = DryRunSerializer(required=False, help_text="Only for a dry run: its totals.")

    class Meta:
        model = Operation
        fields = [
            "op_id",
            "op_type",
            "state",
            "lines_finished",
            "is_finished",
            "is_paused",
            "is_terminated",
            "lines_failed",
            "total_lines",
            "percent",
            "rows_per_second",
            "eta_seconds",
            "error",
            "created_at",
            "started_at",
            "finished_at",
            "updated_at",
            "dry_run",
        ]
        read_only_fields = fields

    def to_representation(self, op: Operation) -> dict:
        return selectors.operation_status(op)


class OperationPageSerializer(serializers.ListSerializer):
    """A page of the list: what the statuses read beside the operations, read for the page."""

    def to_representation(self, data) -> list[dict]:
        ops = list(data.all() if hasattr(data, "all") else data)
        selectors.attach_upload_progress(ops)
        return super().to_representation(ops)


class OperationListSerializer(OperationSerializer):
    """An operation in the list: the status object, and what tells operations apart (the
    file's name, how long it ran; `created_at` and `error` are the status object's)."""

    file_name = serializers.CharField(read_only=True, help_text="The client's file name, empty without a file.")
    duration_seconds = serializers.FloatField(
        read_only=True, allow_null=True, help_text="From its start to its finish, or to now while unfinished."
    )

    class Meta(OperationSerializer.Meta):
        fields = [*OperationSerializer.Meta.fields, "file_name", "duration_seconds"]
        read_only_fields = fields
        list_serializer_class = OperationPageSerializer

    def to_representation(self, op: Operation) -> dict:
        return selectors.operation_list_entry(op)


class RegisterSerializer(serializers.Serializer):
    op_type = serializers.CharField(required=False, default="Upload")
    strict = serializers.BooleanField(required=False, help_text="Fail at the first bad CSV row.")
    target = serializers.CharField(
        required=False,
        help_text="Upload: import into this target's table (docs/import-targets.md), not UploadedRow.",
    )
    mapping = serializers.JSONField(
        required=False,
        help_text='Upload with a target: CSV column -> field, a JSON object (or its text), e.g. {"E-mail": "email"}; '
        "null leaves a column out.",
    )
    dry_run = serializers.BooleanField(
        required=False,
        help_text="Upload: read and check every row as the import would, store only the row errors and totals; "
        "then POST /api/operations/{id}/import/ imports the same stored file.",
    )


class EventSerializer(serializers.ModelSerializer):
    class Meta:
        model = OperationEvent
        fields = ["at", "actor", "from_state", "to_state", "detail"]


class RowErrorSerializer(serializers.ModelSerializer):
    class Meta:
        model = RowError
        fields = ["line_number", "reason", "raw"]


class MessageSerializer(serializers.Serializer):
    message = serializers.CharField()
