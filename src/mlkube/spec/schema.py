"""JSON Schema of the spec documents, for editors. Pure."""

from __future__ import annotations

from typing import Any

from pydantic import TypeAdapter

from mlkube.spec.deployment import Document, ModelDeployment, PriorityClass, Quota

_BY_KIND: dict[str, Any] = {
    "ModelDeployment": ModelDeployment,
    "Quota": Quota,
    "PriorityClass": PriorityClass,
}


def spec_json_schema(kind: str = "all") -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of one document kind, or of any document."""
    target: Any = Document if kind == "all" else _BY_KIND[kind]
    adapter: TypeAdapter[Any] = TypeAdapter(target)
    schema: dict[str, Any] = adapter.json_schema(by_alias=True, mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema.setdefault("title", "mlkube spec" if kind == "all" else kind)
    return schema
