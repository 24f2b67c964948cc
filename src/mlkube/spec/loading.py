"""YAML text → validated spec documents, with every problem reported at once.

``parse_documents`` is pure (text in, documents or ``SpecError`` out); ``load_documents`` and
``load_spec`` read files. Problems carry the file, the line, the camelCase field path, what was
expected and what was found.
"""

from __future__ import annotations

import importlib
import os
import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from mlkube.errors import SpecError, SpecIssue
from mlkube.spec.base import DNS_LABEL, DNS_SUBDOMAIN
from mlkube.spec.deployment import API_VERSION, KINDS, ModelDeployment, PriorityClass, Quota

if TYPE_CHECKING:
    from mlkube.spec.job import BatchInference, TrainingJob
    from mlkube.spec.pipeline import Pipeline

SpecDocument: TypeAlias = (
    "ModelDeployment | Quota | PriorityClass | TrainingJob | BatchInference | Pipeline"
)
# Each kind's class, by module: job and pipeline models are imported only when a file holds
# one (a replica reads a ModelDeployment alone; their models are part of its cold start).
_CLASSES: dict[str, tuple[str, str]] = {
    "ModelDeployment": ("deployment", "ModelDeployment"),
    "Quota": ("deployment", "Quota"),
    "PriorityClass": ("deployment", "PriorityClass"),
    "TrainingJob": ("job", "TrainingJob"),
    "BatchInference": ("job", "BatchInference"),
    "Pipeline": ("pipeline", "Pipeline"),
}
_PATTERN_WORDS = {
    DNS_LABEL: "must be a DNS label: lowercase letters, digits and '-', "
    "starting and ending with a letter or digit",
    DNS_SUBDOMAIN: "must be a DNS subdomain: lowercase letters, digits, '-' and '.'",
}
_FOUND_MAX_CHARS = 80  # long values are cut so a whole embedded document is not echoed back
SPEC_SUFFIXES = (".yaml", ".yml")


def parse_documents(text: str, source: str = "<string>") -> list[SpecDocument]:
    """Every document in ``text``, validated. Raises SpecError listing all problems.

    Pure: no I/O.
    """
    nodes, data = _compose(text, source)
    documents: list[SpecDocument] = []
    issues: list[SpecIssue] = []
    for index, (node, raw) in enumerate(zip(nodes, data, strict=True)):
        prefix = f"[document {index + 1}] " if len(nodes) > 1 else ""
        try:
            documents.append(_validate_document(raw, node))
        except _DocumentError as error:
            issues.extend(
                SpecIssue(i.path, prefix + i.message, i.line, i.found) for i in error.issues
            )
    if issues:
        raise SpecError(source, issues)
    if not documents:
        raise SpecError(source, [SpecIssue("", "the file holds no document", 1)])
    _check_unique_names(documents, source)
    return documents


def load_documents(*paths: str | os.PathLike[str]) -> list[SpecDocument]:
    """Documents from files and folders (every .yaml/.yml inside, sorted by name)."""
    documents: list[SpecDocument] = []
    problems: list[SpecError] = []
    for file in _spec_files(paths):
        try:
            text = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            reason = error.strerror if isinstance(error, OSError) else "not UTF-8 text"
            problems.append(SpecError(str(file), [SpecIssue("", f"cannot read: {reason}")]))
            continue
        try:
            parsed = parse_documents(text, str(file))
        except SpecError as error:
            problems.append(error)
            continue
        for document in parsed:
            document._source_file = str(file)
            if not isinstance(document, Quota | PriorityClass):
                document._source_dir = str(file.parent.resolve())
        documents.extend(parsed)
    if not problems:
        problems.extend(_duplicates_across_files(documents))
    if not problems:
        problems.extend(_pipeline_references(documents))
    if problems:
        if len(problems) == 1:
            raise problems[0]
        issues = [
            SpecIssue(i.path, i.message, i.line, i.found) for p in problems for i in _located(p)
        ]
        raise SpecError(", ".join(p.source for p in problems), issues)
    return documents


def load_spec(path: str | os.PathLike[str]) -> ModelDeployment:
    """The one ModelDeployment in ``path``; an error if there is none or more than one."""
    deployments = [d for d in load_documents(path) if isinstance(d, ModelDeployment)]
    if len(deployments) != 1:
        raise SpecError(
            str(path),
            [SpecIssue("", f"expected one ModelDeployment, found {len(deployments)}")],
        )
    return deployments[0]


def _located(error: SpecError) -> Iterator[SpecIssue]:
    for issue in error.issues:
        where = f"{error.source}:{issue.line}" if issue.line else error.source
        yield SpecIssue(issue.path, f"{where}: {issue.message}", None, issue.found)


def _duplicates_across_files(documents: list[SpecDocument]) -> list[SpecError]:
    """Two files defining the same document (kind, namespace, name): one would hide the other."""
    first: dict[tuple[str, str, str], str] = {}
    problems: list[SpecError] = []
    for document in documents:
        key = (document.kind, document.metadata.namespace, document.metadata.name)
        source = document_source(document)
        if key in first and first[key] != source:
            message = f"{key[0]} '{key[2]}' in namespace '{key[1]}' is also defined in {first[key]}"
            problems.append(SpecError(source, [SpecIssue("metadata.name", message)]))
        first.setdefault(key, source)
    return problems


def _pipeline_references(documents: list[SpecDocument]) -> list[SpecError]:
    """A Pipeline's ``jobRef`` may name a TrainingJob in any of the files loaded."""
    problems: list[SpecError] = []
    if not any(document.kind == "Pipeline" for document in documents):
        return problems
    from mlkube.spec.job import TrainingJob
    from mlkube.spec.pipeline import Pipeline, cross_document_problems

    for pipeline in documents:
        if not isinstance(pipeline, Pipeline):
            continue
        jobs = {
            d.metadata.name: d.spec
            for d in documents
            if isinstance(d, TrainingJob) and d.namespace == pipeline.namespace
        }
        issues = [SpecIssue(p, m) for p, m in cross_document_problems(pipeline, jobs)]
        if issues:
            problems.append(SpecError(document_source(pipeline), issues))
    return problems


def document_source(document: SpecDocument) -> str:
    """The file a loaded document came from (``<string>`` when parsed from text)."""
    return document._source_file


def spec_files(paths: tuple[str | os.PathLike[str], ...]) -> list[Path]:
    """The spec files ``paths`` name: files as given, folders searched recursively.

    Every ``.yaml``/``.yml`` below a folder, sorted by path; hidden folders are skipped.
    """
    return _spec_files(paths)


def _spec_files(paths: tuple[str | os.PathLike[str], ...]) -> list[Path]:
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(
                p
                for p in path.rglob("*")
                if p.suffix in SPEC_SUFFIXES
                and p.is_file()
                and not any(part.startswith(".") for part in p.relative_to(path).parts)
            )
            if not found:
                raise SpecError(str(path), [SpecIssue("", "the folder holds no .yaml file")])
            files.extend(found)
        elif path.exists():
            files.append(path)
        else:
            raise SpecError(str(path), [SpecIssue("", "no such file or folder")])
    return files


class _DocumentError(Exception):
    def __init__(self, issues: list[SpecIssue]) -> None:
        self.issues = issues


def _compose(text: str, source: str) -> tuple[list[yaml.Node], list[Any]]:
    loader = yaml.SafeLoader(text)
    nodes: list[yaml.Node] = []
    data: list[Any] = []
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is None:  # pragma: no cover - check_node said there is one
                break
            nodes.append(node)
            data.append(loader.construct_document(node))
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(error, "problem", None) or str(error)
        raise SpecError(source, [SpecIssue("", f"invalid YAML: {problem}", line)]) from error
    finally:
        loader.dispose()
    return nodes, data


def _validate_document(raw: Any, node: yaml.Node) -> SpecDocument:
    line = node.start_mark.line + 1
    if not isinstance(raw, dict):
        found = type(raw).__name__ if raw is not None else "an empty document"
        raise _DocumentError(
            [
                SpecIssue(
                    "", "expected a mapping with apiVersion, kind, metadata and spec", line, found
                )
            ]
        )
    kind = raw.get("kind")
    if kind not in _CLASSES:
        message = f"kind must be one of {', '.join(KINDS)}"
        raise _DocumentError(
            [
                SpecIssue(
                    "kind",
                    message,
                    _line_of(node, ("kind",)) or line,
                    repr(kind) if kind is not None else "nothing",
                )
            ]
        )
    if raw.get("apiVersion") != API_VERSION:
        found = repr(raw.get("apiVersion")) if "apiVersion" in raw else "nothing"
        raise _DocumentError(
            [
                SpecIssue(
                    "apiVersion",
                    f"must be {API_VERSION}",
                    _line_of(node, ("apiVersion",)) or line,
                    found,
                )
            ]
        )
    cls = _document_class(kind)
    try:
        return cls.model_validate(raw)
    except ValidationError as error:
        raise _DocumentError([_issue(e, raw, node, cls) for e in error.errors()]) from error


def _document_class(kind: str) -> type[SpecDocument]:
    module, name = _CLASSES[kind]
    cls: type[SpecDocument] = getattr(importlib.import_module(f"mlkube.spec.{module}"), name)
    return cls


def _issue(error: ErrorDetails, raw: Any, node: yaml.Node, cls: type[BaseModel]) -> SpecIssue:
    loc = _data_path(error["loc"], raw)
    path = ".".join(str(p) if isinstance(p, str) else f"[{p}]" for p in loc).replace(".[", "[")
    line = _line_of(node, loc)
    kind = error["type"]
    if kind == "missing":
        return SpecIssue(path, "required field is missing", line)
    if kind == "extra_forbidden":
        allowed = _allowed_keys(cls, loc[:-1], raw)
        hint = f" (expected one of: {', '.join(allowed)})" if allowed else ""
        return SpecIssue(path, f"unknown field{hint}", line)
    if kind == "string_pattern_mismatch":
        pattern = str((error.get("ctx") or {}).get("pattern", ""))
        readable = _PATTERN_WORDS.get(pattern, f"must match the pattern {pattern}")
        return SpecIssue(path, readable, line, _found(error.get("input")))
    message = error["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
    return SpecIssue(path, _lowercase_first(message), line, _found(error.get("input")))


def _lowercase_first(text: str) -> str:
    return text[:1].lower() + text[1:] if text[:2] != text[:2].upper() else text


def _found(value: Any) -> str | None:
    if isinstance(value, dict | list) and len(repr(value)) > _FOUND_MAX_CHARS:
        return None
    text = repr(value)
    return text if len(text) <= _FOUND_MAX_CHARS else text[: _FOUND_MAX_CHARS - 3] + "..."


def _data_path(loc: tuple[int | str, ...], raw: Any) -> list[int | str]:
    """Pydantic's location with union tags (``cpu``, ``function-after[...]``) dropped."""
    path: list[int | str] = []
    current = raw
    for part in loc:
        in_dict = isinstance(current, dict) and part in current
        in_list = isinstance(current, list) and isinstance(part, int) and 0 <= part < len(current)
        if in_dict or in_list:
            current = current[part]
        elif (
            isinstance(current, dict)
            and isinstance(part, str)
            and (current.get("type") == part or "[" in part or part in ("str", "int", "float"))
        ):
            continue
        else:
            current = None
        path.append(part)
    return path


def _line_of(node: yaml.Node, loc: typing.Sequence[int | str]) -> int | None:
    current = node
    for part in loc:
        child = None
        if isinstance(current, yaml.MappingNode):
            child = next((v for k, v in current.value if k.value == part), None)
        elif isinstance(current, yaml.SequenceNode) and isinstance(part, int):
            child = current.value[part] if 0 <= part < len(current.value) else None
        if child is None:
            break
        current = child
    return int(current.start_mark.line) + 1


def _allowed_keys(cls: type[BaseModel], loc: list[int | str], raw: Any) -> list[str]:
    target: Any = cls
    current = raw
    for part in loc:
        if isinstance(current, dict):
            current = current.get(part)
        elif isinstance(current, list) and isinstance(part, int) and 0 <= part < len(current):
            current = current[part]
        else:
            current = None
        target = _field_type(target, part, current)
        if target is None:
            return []
    if isinstance(target, type) and issubclass(target, BaseModel):
        return sorted(f.alias or n for n, f in target.model_fields.items())
    return []


def _field_type(target: Any, part: int | str, value: Any) -> Any:
    if isinstance(target, type) and issubclass(target, BaseModel) and isinstance(part, str):
        field = next((f for n, f in target.model_fields.items() if (f.alias or n) == part), None)
        return _unwrap(field.annotation, value) if field is not None else None
    if isinstance(part, int):
        args = typing.get_args(target)
        return _unwrap(args[0], value) if args else None
    return None


def _unwrap(annotation: Any, value: Any) -> Any:
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(annotation)[0], value)
    if origin in (typing.Union, types.UnionType):
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        tagged = value.get("type") if isinstance(value, dict) else None
        for member in members:
            inner = _unwrap(member, value)
            if isinstance(inner, type) and issubclass(inner, BaseModel):
                literal = inner.model_fields.get("type")
                if (
                    tagged is None
                    or literal is None
                    or tagged in typing.get_args(literal.annotation)
                ):
                    return inner
        return members[0] if members else None
    return annotation


def _check_unique_names(documents: list[SpecDocument], source: str) -> None:
    seen: set[tuple[str, str, str]] = set()
    for document in documents:
        key = (document.kind, document.metadata.namespace, document.metadata.name)
        if key in seen:
            raise SpecError(
                source,
                [
                    SpecIssue(
                        "metadata.name",
                        f"{key[0]} '{key[2]}' in namespace '{key[1]}' is defined twice",
                    )
                ],
            )
        seen.add(key)
