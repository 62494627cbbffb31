"""Property-based calls against the OpenAPI schema, in process: no request may cause a 5xx."""

from __future__ import annotations

import tempfile
from pathlib import Path

import schemathesis
from hypothesis import HealthCheck, settings

from server.config import load_settings
from server.web.app import create_app
from tests.support.cli import analysed_data_dir

# Loaded at collection: schemathesis parametrizes one test per API operation from the schema.
_DATA_DIR = analysed_data_dir(Path(tempfile.mkdtemp(prefix="neuronscope-schema-")))
schema = schemathesis.openapi.from_asgi(
    "/openapi.json",
    create_app(
        load_settings(
            {"NEURONSCOPE_DATA_DIR": str(_DATA_DIR), "NEURONSCOPE_ALLOWED_HOSTS": "testserver"}
        )
    ),
)


@schema.parametrize()
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_errors(case):
    response = case.call()
    assert response.status_code < 500, response.text
