"""docs/import-targets.md's worked example, run: its python block declares a model and a target,
which this test creates, registers and imports a file into (by the worker loop, in-process)."""

import datetime
import decimal
import re
from pathlib import Path

import pytest
from django.apps import apps
from django.db import connection

from operations import targets, worker
from operations.models import Operation, RowError
from tests.conftest import upload_file

DOC = Path(__file__).resolve().parents[2] / "docs" / "import-targets.md"


@pytest.fixture
def products(transactional_db):
    """The doc's Product model (as if in the contacts app) with its table, and its target."""
    (source,) = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    scope = {"__name__": "contacts.doc_example"}
    exec(compile(source, str(DOC), "exec"), scope)  # noqa: S102 (our own documentation)
    model = scope["Product"]
    with connection.schema_editor() as editor:
        editor.create_model(model)
    targets.register(scope["PRODUCTS"])
    yield model
    targets.unregister("products")
    with connection.schema_editor() as editor:
        editor.delete_model(model)
    del apps.all_models["contacts"]["product"]
    apps.clear_cache()


def test_the_worked_example_imports_typed_rows(api, chunks, products):
    content = (
        b"SKU,Title,Price (EUR),In Stock,Released,Colour\n"
        b"A-1,Lamp,19.90,yes,2024-05-01,red\n"
        b"A-2,Chair,12.5x,no,,blue\n"
        b"A-1,Lamp again,1,,,\n"
        b"A-3,Table,120,,2023-01-31,\n"
    )
    response = api.post("/register/", {"op_type": "Upload", "target": "products"}, format="json")
    op_id = response.json()["op_id"]
    assert api.post("/upload/", {"op_id": op_id, "file": upload_file(content)}).status_code == 202
    worker.work_operation(op_id)
    op = Operation.objects.get(pk=op_id)
    assert (op.state, op.lines_finished, op.lines_failed) == ("completed", 4, 2)
    rows = products.objects.filter(import_operation=op_id).order_by("import_line")
    assert [(p.import_line, p.sku, p.price, p.in_stock, p.released) for p in rows] == [
        (1, "A-1", decimal.Decimal("19.90"), True, datetime.date(2024, 5, 1)),
        (4, "A-3", decimal.Decimal("120.00"), True, datetime.date(2023, 1, 31)),
    ]
    assert all(p.created for p in rows)
    assert list(RowError.objects.filter(operation_id=op_id).values_list("line_number", "reason")) == [
        (2, 'Price (EUR): "12.5x" is not a decimal number'),
        (3, 'SKU: "A-1" is already in line 1 of this file'),
    ]
    page = api.get(f"/api/operations/{op_id}/rows/").json()["results"]
    assert page[0]["data"] == {
        "SKU": "A-1",
        "Title": "Lamp",
        "Price (EUR)": 19.9,
        "In Stock": True,
        "Released": "2024-05-01",
    }
