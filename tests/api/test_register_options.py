"""Nothing a client sends is silently ignored (SPEC §6): an option the type does not know is a
400 naming it, on every way of registering."""

import pytest

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("body_format", ["json", "multipart"])
def test_an_unknown_option_is_refused_by_name(api, body_format):
    response = api.post("/register/", {"op_type": "Upload", "delimiter": ";"}, format=body_format)
    assert response.status_code == 400, response.content
    assert response.json()["message"] == "Upload has no option delimiter (its options: mapping, strict, target, upload)"


def test_every_unknown_option_is_named(api):
    response = api.post("/register/", {"strict": True, "zeta": 1, "alpha": 2}, format="json")
    assert response.status_code == 400
    expected = "Upload has no option alpha, zeta (its options: mapping, strict, target, upload)"
    assert response.json()["message"] == expected


def test_an_export_names_its_own_options(api):
    response = api.post("/register/", {"op_type": "Export", "source": 1, "lines": 5}, format="json")
    assert response.status_code == 400
    assert response.json()["message"] == "Export has no option lines (its options: filter, source)"


def test_known_options_register(api):
    response = api.post("/register/", {"op_type": "Upload", "strict": True}, format="json")
    assert response.status_code == 201, response.content


def test_the_rest_api_refuses_them_too(api):
    response = api.post("/api/operations/", {"op_type": "Upload", "encoding": "latin-1"}, format="json")
    assert response.status_code == 400, response.content
    assert "no option encoding" in response.json()["message"]
