"""JSON Schema of the spec documents, for editors, with every field's documentation.

Field descriptions come from the attribute docstrings in the spec modules, read here from the
source (only when a schema is asked for, so importing the spec stays fast).
"""

from __future__ import annotations

import ast
import inspect
import itertools
import textwrap
from typing import Annotated, Any

from pydantic import Field, TypeAdapter

from mlkube.spec.base import SpecModel
from mlkube.spec.deployment import ModelDeployment, PriorityClass, Quota
from mlkube.spec.job import BatchInference, TrainingJob
from mlkube.spec.pipeline import Pipeline

Document = Annotated[
    ModelDeployment | Quota | PriorityClass | TrainingJob | BatchInference | Pipeline,
    Field(discriminator="kind"),
]

_BY_KIND: dict[str, Any] = {
    "ModelDeployment": ModelDeployment,
    "Quota": Quota,
    "PriorityClass": PriorityClass,
    "TrainingJob": TrainingJob,
    "BatchInference": BatchInference,
    "Pipeline": Pipeline,
}


def spec_json_schema(kind: str = "all") -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of one document kind, or of any document."""
    target: Any = Document if kind == "all" else _BY_KIND[kind]
    adapter: TypeAdapter[Any] = TypeAdapter(target)
    schema: dict[str, Any] = adapter.json_schema(by_alias=True, mode="validation")
    docs = {cls.__name__: cls for cls in _spec_classes(SpecModel)}
    for name, definition in schema.get("$defs", {}).items():
        if name in docs:
            _describe(definition, docs[name])
    if kind != "all":
        _describe(schema, _BY_KIND[kind])
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema.setdefault("title", "mlkube spec" if kind == "all" else kind)
    return schema


def field_docs(cls: type[SpecModel]) -> dict[str, str]:
    """Attribute docstrings of ``cls``: the string literal right after each annotated field."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    except (OSError, TypeError):  # pragma: no cover - source not available (zipped install)
        return {}
    body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
    docs: dict[str, str] = {}
    for node, following in itertools.pairwise(body):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(following, ast.Expr)
            and isinstance(following.value, ast.Constant)
            and isinstance(following.value.value, str)
        ):
            docs[node.target.id] = inspect.cleandoc(following.value.value)
    return docs


def _describe(definition: dict[str, Any], cls: type[SpecModel]) -> None:
    properties = definition.get("properties", {})
    for field_name, text in field_docs(cls).items():
        field = cls.model_fields.get(field_name)
        alias = field.alias if field is not None and field.alias else field_name
        if alias in properties:
            properties[alias]["description"] = text


def _spec_classes(root: type[SpecModel]) -> list[type[SpecModel]]:
    found: list[type[SpecModel]] = []
    for sub in root.__subclasses__():
        found.append(sub)
        found.extend(_spec_classes(sub))
    return found
