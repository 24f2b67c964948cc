"""Every field of the JSON Schema is described (the README promises it; editors show it)."""

from __future__ import annotations

from typing import Any

from mlkube.spec.schema import spec_json_schema


def _refs(node: dict[str, Any]) -> list[str]:
    found = [node["$ref"]] if "$ref" in node else []
    for key in ("anyOf", "oneOf", "allOf"):
        for option in node.get(key, []):
            found += _refs(option)
    items = node.get("items")
    if isinstance(items, dict):
        found += _refs(items)
    return found


def _undescribed(schema: dict[str, Any]) -> list[str]:
    definitions = schema.get("$defs", {})
    missing = []
    for name, definition in definitions.items():
        for field, prop in definition.get("properties", {}).items():
            if prop.get("description"):
                continue
            referenced = [definitions[r.rsplit("/", 1)[-1]] for r in _refs(prop)]
            if referenced and all(d.get("description") for d in referenced):
                continue
            missing.append(f"{name}.{field}")
    return missing


def test_every_property_of_every_kind_has_a_description():
    assert _undescribed(spec_json_schema("all")) == []
