"""Schemathesis hooks for tests/contract/run (loaded through SCHEMATHESIS_HOOKS).

`positive_data_acceptance_of_signed_cursors` is the built-in `positive_data_acceptance` with one
exception, and the run uses it in the built-in's place (`--exclude-checks
positive_data_acceptance`). A list `cursor` is opaque and signed (src/cursor.rs; docs/api.md,
"List"): the service refuses every cursor it did not issue with 400 `invalid-query`, and no
schema can describe the ones it did, so a made-up cursor that the schema allows is refused, as
documented. That refusal is accepted here for a non-empty cursor the service has not returned
during this run. Everything else must still be accepted, as the built-in demands: on every
operation, and on GET /v1/timestamps a cursor the service did return (the stateful phase
follows `next_cursor`), any `limit` the schema allows, and an empty cursor, which the schema
itself can rule out (`minLength`).
"""

import threading

import schemathesis
from schemathesis.specs.openapi.checks import positive_data_acceptance

_issued = set()  # every `next_cursor` the service returned in this run
_lock = threading.Lock()  # workers are threads


def _is_list(case):
    return case.operation.method.upper() == "GET" and case.operation.path == "/v1/timestamps"


def _refuses_cursor(response):
    try:
        problem = response.json()
    except ValueError:
        return False
    return (
        isinstance(problem, dict)
        and str(problem.get("type", "")).endswith("#invalid-query")
        and str(problem.get("detail", "")).startswith("cursor")
    )


@schemathesis.check
def positive_data_acceptance_of_signed_cursors(ctx, response, case):
    if _is_list(case):
        if response.status_code == 200:
            try:
                next_cursor = response.json().get("next_cursor")
            except (ValueError, AttributeError):
                next_cursor = None
            if isinstance(next_cursor, str):
                with _lock:
                    _issued.add(next_cursor)
        cursor = (case.query or {}).get("cursor")
        if isinstance(cursor, str) and cursor and response.status_code == 400:
            with _lock:
                issued = cursor in _issued
            if not issued and _refuses_cursor(response):
                return None
    return positive_data_acceptance(ctx, response, case)
