#!/usr/bin/env python3
"""Validates custom resources against the CRD schemas in tests/k8s/schemas/, strictly.

    validate-custom.py FILE...

Every document must be of a kind with a schema here (README.md there names each source). The
check is the API server's with `--validate=strict`: the CRD's openAPIV3Schema, and no field the
schema does not declare (unless it marks the object x-kubernetes-preserve-unknown-fields),
where the server would otherwise prune it silently. Exits 1, naming document and field, on any
problem.
"""

import json
import sys
from pathlib import Path

import jsonschema
import yaml

SCHEMAS = Path(__file__).resolve().parent / "schemas"
KINDS = {("policy.sigstore.dev/v1beta1", "ClusterImagePolicy"): "clusterimagepolicy-v1beta1.json"}


def strict(schema):
    """The schema with undeclared fields refused wherever it declares fields."""
    if isinstance(schema, dict):
        schema = {key: strict(value) for key, value in schema.items()}
        if "properties" in schema and not schema.get("x-kubernetes-preserve-unknown-fields"):
            schema.setdefault("additionalProperties", False)
    elif isinstance(schema, list):
        schema = [strict(item) for item in schema]
    return schema


problems = []
checked = 0
for path in sys.argv[1:]:
    for number, document in enumerate(yaml.safe_load_all(open(path)), 1):
        if document is None:
            continue
        where = f"{path} document {number} ({document.get('kind')} {document.get('metadata', {}).get('name')})"
        schema_file = KINDS.get((document.get("apiVersion"), document.get("kind")))
        if schema_file is None:
            problems.append(f"{where}: no schema for {document.get('apiVersion')} {document.get('kind')}")
            continue
        if not document.get("metadata", {}).get("name"):
            problems.append(f"{where}: metadata.name is missing")
        body = {key: value for key, value in document.items() if key not in ("apiVersion", "kind", "metadata")}
        validator = jsonschema.Draft7Validator(strict(json.loads((SCHEMAS / schema_file).read_text())))
        for error in sorted(validator.iter_errors(body), key=lambda error: list(error.path)):
            field = ".".join(str(part) for part in error.path) or "(top)"
            problems.append(f"{where}: {field}: {error.message}")
        checked += 1
if problems:
    print("validate-custom:", *problems, sep="\n  ", file=sys.stderr)
    sys.exit(1)
print(f"validate-custom: {checked} custom resources valid against their CRD schemas (strict)")
