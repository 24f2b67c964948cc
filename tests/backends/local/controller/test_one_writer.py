"""One writer of the controller's deployment state: only ``controller.py`` changes a
``Deployment`` or ``Replica`` record (or the controller's registry of them).

An AST scan of every module of ``mlkube.backends.local.controller``. A name stands for a record
when the code says so: a parameter or variable annotated ``Deployment``/``Replica``; a variable
bound from their constructors, ``dataclasses.replace`` of one, a function of the same module
annotated to return one, an item of a record container (``dep.replicas[...]``,
``ctrl.deployments.get(...)``), a loop over such a container, or an attribute of a record (an
alias such as ``snaps = replica.snapshots``); ``self`` in their own methods; and, as a fallback,
the names the package uses for them (``dep``, ``replica``, ``r``, ``*_dep``, ``*_replica``).
The record containers are found by type too: the attributes annotated as containers of records
in ``deployment.py`` and ``controller.py`` (``replicas``, ``deployments``).

A write is an assignment, augmented assignment, annotated assignment or ``del`` of an attribute
(or an item of one) reached from a record name or through a record container attribute;
``setattr``/``delattr`` on a record; or a mutating method (``append``, ``pop``...) called on
such an attribute.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

import mlkube.backends.local.controller as package

PACKAGE = Path(package.__file__).parent
WRITER = "controller.py"
RECORDS = frozenset({"Deployment", "Replica"})
MUTATORS = frozenset(
    {
        "append",
        "pop",
        "clear",
        "update",
        "extend",
        "remove",
        "setdefault",
        "discard",
        "add",
        "insert",
        "popitem",
        "sort",
        "reverse",
    }
)
NAMES = re.compile(r"^(dep|deployment|replica|r)$|_(dep|deployment|replica)$")
CONTAINER_CALLS = frozenset({"values", "list", "sorted", "tuple", "reversed", "iter"})


# types ----------------------------------------------------------------------------------------
def _mentions_record(node: ast.AST) -> bool:
    return any(
        (isinstance(n, ast.Name) and n.id in RECORDS)
        or (isinstance(n, ast.Constant) and isinstance(n.value, str) and n.value in RECORDS)
        for n in ast.walk(node)
    )


def _annotation(node: ast.expr | None) -> str:
    """'record', 'container' (of records) or '' for an annotation."""
    if node is None or not _mentions_record(node):
        return ""
    if isinstance(node, ast.Subscript):
        return "container"
    return "record"  # ``Replica``, ``Replica | None``, ``"Deployment"``


def container_attributes(sources: list[ast.Module]) -> frozenset[str]:
    """Attributes annotated as containers of records (``replicas: dict[str, Replica]``)."""
    found = set()
    for tree in sources:
        for node in ast.walk(tree):
            if isinstance(node, ast.AnnAssign) and _annotation(node.annotation) == "container":
                target = node.target
                if isinstance(target, ast.Name):
                    found.add(target.id)
                elif isinstance(target, ast.Attribute):
                    found.add(target.attr)
    return frozenset(found)


def _returns(tree: ast.Module) -> dict[str, str]:
    """What each function of the module is annotated to return: 'record', 'container', ''."""
    return {
        node.name: _annotation(node.returns)
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
    }


class Scope:
    """Which names of one top-level function (or of the module's own code) hold records."""

    def __init__(self, containers: frozenset[str], returns: dict[str, str]) -> None:
        self.containers_attrs = containers
        self.returns = returns
        self.records: set[str] = set()
        self.containers: set[str] = set()

    def is_record(self, node: ast.expr) -> bool:
        if isinstance(node, ast.Name):
            return node.id in self.records or bool(NAMES.search(node.id))
        if isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Name) and func.id in RECORDS:
                return True
            if isinstance(func, ast.Attribute) and _root_name(func) in RECORDS:
                return True  # Replica.from_json(...)
            if _called(func) == "replace" and node.args:
                return self.is_record(node.args[0])
            if _called(func) == "get" and isinstance(func, ast.Attribute):
                return self.is_container(func.value)
            return self.returns.get(_called(func), "") == "record"
        if isinstance(node, ast.Subscript):
            return self.is_container(node.value)
        return False

    def is_container(self, node: ast.expr) -> bool:
        if isinstance(node, ast.Name):
            return node.id in self.containers
        if isinstance(node, ast.Attribute):
            return node.attr in self.containers_attrs
        if isinstance(node, ast.Call):
            name = _called(node.func)
            if name in CONTAINER_CALLS:
                inner = node.func.value if isinstance(node.func, ast.Attribute) else None
                if inner is None and node.args:
                    inner = node.args[0]
                return inner is not None and self.is_container(inner)
            return self.returns.get(name, "") == "container"
        if isinstance(node, ast.ListComp | ast.GeneratorExp | ast.SetComp):
            return self.is_record(node.elt)
        return False

    def is_owned(self, node: ast.expr) -> bool:
        """Whether ``node`` is a record or a part of one (an attribute or item reached from one,
        or a record container attribute)."""
        while isinstance(node, ast.Attribute | ast.Subscript):
            if isinstance(node, ast.Attribute) and (
                node.attr in self.containers_attrs or self.is_record(node.value)
            ):
                return True
            node = node.value
        return False

    def learn(self, node: ast.AST) -> bool:
        """Learn from one binding; True when a name was added."""
        before = len(self.records) + len(self.containers)
        if isinstance(node, ast.arg):
            self._bind(node.arg, _annotation(node.annotation))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            self._bind(node.target.id, _annotation(node.annotation))
        elif isinstance(node, ast.Assign | ast.NamedExpr):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                if isinstance(target, ast.Name):
                    self._bind(target.id, self._kind(node.value))
        elif (
            isinstance(node, ast.For | ast.AsyncFor | ast.comprehension)
            and isinstance(node.target, ast.Name)
            and self.is_container(node.iter)
        ):
            self.records.add(node.target.id)
        return len(self.records) + len(self.containers) > before

    def _kind(self, value: ast.expr) -> str:
        if self.is_record(value) or self.is_owned(value):
            return "record"  # a record, or an alias of a part of one
        return "container" if self.is_container(value) else ""

    def _bind(self, name: str, kind: str) -> None:
        if kind == "record":
            self.records.add(name)
        elif kind == "container":
            self.containers.add(name)


def _called(func: ast.expr) -> str:
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return ""


def _root_name(node: ast.expr) -> str:
    while isinstance(node, ast.Attribute | ast.Subscript | ast.Call):
        node = node.func if isinstance(node, ast.Call) else node.value
    return node.id if isinstance(node, ast.Name) else ""


# writes ---------------------------------------------------------------------------------------
def _targets(node: ast.AST) -> Iterator[ast.expr]:
    if isinstance(node, ast.Assign):
        pending = list(node.targets)
    elif isinstance(node, ast.AugAssign | ast.AnnAssign):
        pending = [node.target]
    elif isinstance(node, ast.Delete):
        pending = list(node.targets)
    elif isinstance(node, ast.For | ast.AsyncFor | ast.comprehension | ast.withitem):
        target = node.optional_vars if isinstance(node, ast.withitem) else node.target
        pending = [target] if target is not None else []
    else:
        pending = []
    while pending:
        target = pending.pop()
        if isinstance(target, ast.Tuple | ast.List):
            pending.extend(target.elts)
        elif isinstance(target, ast.Starred):
            pending.append(target.value)
        else:
            yield target


def _writes_of(node: ast.AST, scope: Scope) -> Iterator[ast.AST]:
    for target in _targets(node):
        if scope.is_owned(target):
            yield target
    if isinstance(node, ast.Call):
        func = node.func
        if isinstance(func, ast.Attribute) and func.attr in MUTATORS and scope.is_owned(func):
            yield node
        if _called(func) in ("setattr", "delattr", "__setattr__", "__delattr__") and any(
            scope.is_record(arg) for arg in node.args[:1]
        ):
            yield node


def _units(tree: ast.Module) -> Iterator[tuple[ast.AST, set[str]]]:
    """Each top-level function (with nested ones) and each method, with the names that are
    records by position: ``self`` in the methods of a record class."""
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            own = node.name in RECORDS
            for item in node.body:
                if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
                    first = item.args.args[:1]
                    bound = own and first and not _decorated(item, "classmethod", "staticmethod")
                    yield item, {first[0].arg} if bound else set()
                else:
                    yield item, set()
        else:
            yield node, set()


def _decorated(function: ast.FunctionDef | ast.AsyncFunctionDef, *names: str) -> bool:
    return any(_called(d) in names for d in function.decorator_list)


def writes(tree: ast.Module, containers: frozenset[str]) -> list[tuple[int, str]]:
    """(line, code) of every write to a record in ``tree``."""
    returns = _returns(tree)
    found: list[tuple[int, str]] = []
    for unit, records in _units(tree):
        scope = Scope(containers, returns)
        scope.records |= records
        nodes = list(ast.walk(unit))
        while sum(scope.learn(n) for n in nodes):  # every node each pass, until nothing new
            pass
        for node in nodes:
            found.extend(
                (getattr(w, "lineno", 0), ast.unparse(w).splitlines()[0])
                for w in _writes_of(node, scope)
            )
    return sorted(set(found))


def _package() -> dict[str, ast.Module]:
    return {
        str(path.relative_to(PACKAGE)): ast.parse(path.read_text())
        for path in sorted(PACKAGE.rglob("*.py"))
    }


def _containers() -> frozenset[str]:
    trees = _package()
    return container_attributes([trees["deployment.py"], trees[WRITER]])


# the rule -------------------------------------------------------------------------------------
def test_only_the_controller_writes_deployment_and_replica_records():
    containers = _containers()
    violations = [
        f"{name}:{line}: {code}"
        for name, tree in _package().items()
        if name != WRITER
        for line, code in writes(tree, containers)
    ]
    assert violations == [], (
        "handlers and loops return changes (controller/changes.py) and Controller.apply "
        "applies them; these modules write records themselves:\n" + "\n".join(violations)
    )


def test_the_scan_knows_the_record_containers():
    assert _containers() == {"replicas", "deployments"}


def test_the_scan_sees_the_writes_the_controller_makes():
    """The detector is not blind on real code: the one writer's own writes are found."""
    found = {code for _, code in writes(_package()[WRITER], _containers())}
    assert {"dep.rollout", "replica.phase", "dep.replicas.pop(replica.name, None)"} <= found


# the detector, on snippets --------------------------------------------------------------------
HEADER = "from x import Deployment, Replica\n"


def _found(source: str) -> list[tuple[int, str]]:
    return writes(ast.parse(HEADER + source), frozenset({"replicas", "deployments"}))


@pytest.mark.parametrize(
    "source",
    [
        pytest.param("def f(dep):\n    dep.desired = 1\n", id="assign-by-name"),
        pytest.param("def f(x: Deployment):\n    x.desired = 1\n", id="assign-annotated"),
        pytest.param("def f(x: Replica | None):\n    x.phase = 1\n", id="optional-annotation"),
        pytest.param("def f(x: 'Replica'):\n    x.phase = 1\n", id="string-annotation"),
        pytest.param("def f(x: Replica):\n    x.probe_failures += 1\n", id="augmented"),
        pytest.param("def f(x: Replica):\n    del x.snapshots[:-3]\n", id="delete-item"),
        pytest.param("def f(x: Replica):\n    x.snapshots[0] = s\n", id="assign-item"),
        pytest.param("def f(x: Replica):\n    x.snapshots.append(s)\n", id="append"),
        pytest.param("def f(x: Deployment):\n    x.router.on_demand = g\n", id="nested"),
        pytest.param("def f(x: Deployment):\n    a, x.rps = 1, 2\n", id="tuple-target"),
        pytest.param("def f(x: Replica):\n    setattr(x, 'phase', 1)\n", id="setattr"),
        pytest.param("def f(ctrl):\n    ctrl.deployments[k] = d\n", id="registry-item"),
        pytest.param("def f(ctrl):\n    ctrl.deployments.pop(k)\n", id="registry-pop"),
        pytest.param("def f(a):\n    a.replicas.clear()\n", id="container-clear"),
        pytest.param("def f():\n    x = Replica('n', 1, 0, 0.0)\n    x.gpus = ()\n", id="built"),
        pytest.param("def f(x):\n    y = x.replicas['a']\n    y.gpus = ()\n", id="item"),
        pytest.param("def f(x):\n    y = x.replicas.get('a')\n    y.gpus = ()\n", id="get"),
        pytest.param(
            "def f(ctrl):\n    for y in ctrl.deployments.values():\n        y.rps = 0\n",
            id="loop",
        ),
        pytest.param(
            "def f(x):\n    ys = [y for y in sorted(x.replicas.values())]\n"
            "    for z in ys:\n        z.gpus = ()\n",
            id="loop-over-comprehension",
        ),
        pytest.param(
            "def f(ys: list[Replica]):\n    for z in ys:\n        z.gpus = ()\n",
            id="loop-over-annotated-list",
        ),
        pytest.param(
            "def find() -> Replica: ...\ndef f():\n    z = find()\n    z.gpus = ()\n",
            id="returned",
        ),
        pytest.param(
            "def f(x: Replica):\n    snaps = x.snapshots\n    snaps.append(s)\n", id="alias"
        ),
        pytest.param(
            "def f(x: Replica):\n    y = replace(x, phase=1)\n    y.gpus = ()\n", id="replaced"
        ),
        pytest.param(
            "def f(dep):\n    def g():\n        dep.desired = 0\n    return g\n", id="closure"
        ),
        pytest.param(
            "class Replica:\n    def reset(self):\n        self.phase = 0\n", id="own-method"
        ),
    ],
)
def test_the_scan_finds_a_write(source):
    assert _found(source), source


@pytest.mark.parametrize(
    "source",
    [
        pytest.param("def f(dep):\n    x = dep.desired\n", id="read"),
        pytest.param("def f(rows):\n    rows.append(1)\n", id="local-list"),
        pytest.param("def f(dep):\n    out = {}\n    out['a'] = dep.rps\n", id="local-dict"),
        pytest.param("def f(router):\n    router.hold_s = 1\n", id="other-object"),
        pytest.param("def f(dep):\n    seen.add(dep.key)\n", id="record-as-argument"),
        pytest.param(
            "def f(ys: list[Replica], r: Replica):\n    ys.append(r)\n", id="local-record-list"
        ),
        pytest.param("def f(dep):\n    dep.router.drain('a')\n", id="non-mutating-method"),
        pytest.param("class Deployment:\n    desired: int = 0\n", id="field-declaration"),
        pytest.param("class Other:\n    def f(self):\n        self.x = 1\n", id="other-self"),
    ],
)
def test_the_scan_lets_other_code_be(source):
    assert _found(source) == [], source
