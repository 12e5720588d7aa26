"""The status object of SPEC §5 (also the REST detail), events and row errors."""

from rest_framework import serializers

from operations import selectors
from operations.models import Operation, OperationEvent, RowError


class OperationSerializer(serializers.ModelSerializer):
    op_id = serializers.IntegerField(source="pk", read_only=True)
    is_finished = serializers.SerializerMethodField()
    is_paused = serializers.SerializerMethodField()
    is_terminated = serializers.SerializerMethodField()
    percent = serializers.SerializerMethodField()
    rows_per_second = serializers.SerializerMethodField()
    eta_seconds = serializers.SerializerMethodField()

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
        ]
        read_only_fields = fields

    def get_is_finished(self, op: Operation) -> bool:
        return op.state == Operation.State.COMPLETED

    def get_is_paused(self, op: Operation) -> bool:
        return op.state == Operation.State.PAUSED

    def get_is_terminated(self, op: Operation) -> bool:
        return op.state == Operation.State.TERMINATED

    def get_percent(self, op: Operation) -> float | None:
        return selectors.percent_done(op)

    def get_rows_per_second(self, op: Operation) -> float | None:
        return selectors.rows_per_second(op)

    def get_eta_seconds(self, op: Operation) -> float | None:
        return selectors.eta_seconds(op)


class RegisterSerializer(serializers.Serializer):
    op_type = serializers.CharField(required=False, default="Upload")
    strict = serializers.BooleanField(required=False, help_text="Fail at the first bad CSV row.")


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
