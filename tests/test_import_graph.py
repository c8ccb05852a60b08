"""The package's import graph, read from the source: no cycles, faces only, lazy imports justified.

The rules of the layout (README, Development): one subpackage per stage of the
data flow; other packages and users import a package through its face (its
``__init__``, with ``__all__``); no import cycle between modules or between
packages; an import inside a function only in the command line or for a heavy
optional library, with a comment saying why.
"""

from __future__ import annotations

import ast
import importlib
from collections import defaultdict
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "rsxai"
TESTS = Path(__file__).resolve().parent

#: Libraries that may be imported inside a function (start-up time, or an optional extra).
LAZY_LIBRARIES = ("nilearn", "captum", "monai", "distributed", "dask", "matplotlib", "torch")

#: The floors of the house, top first (README, Development): no package imports a higher one.
FLOORS = (
    ("cli", "__main__"),
    ("pipeline",),
    ("stages",),
    ("classify", "explain", "stats", "cohort"),
    ("report", "simulate", "cnn", "networks", "preprocess", "parallel"),
    ("anatomy", "config", "decomposition", "outputs", "tables"),
    ("grid", "exceptions", "progress", "_version"),
)

#: Tests that reach into another package's private machinery on purpose, and why.
WHITE_BOX = {
    ("cohort/test_checks.py", "rsxai.preprocess.signal"): "the filter rule both packages share",
    ("pipeline/test_stack.py", "rsxai.cohort.map_stack"): "the network name read from a file name",
    ("stages/test_explain.py", "rsxai.report.explanations"): "the section drawn from stage files",
    ("stages/test_stats.py", "rsxai.report.methods"): "the methods text of the stage's settings",
    ("test_parallel.py", "rsxai.stats.design"): "patched to record where batches run",
    ("test_parallel.py", "rsxai.stats.tfce"): "the neighbour table of a batch",
    ("test_parallel.py", "rsxai.stats.max_statistic"): "the batch settings sent to workers",
    ("test_parallel.py", "rsxai.classify.cross_validation"): "patched to record where folds run",
    ("test_parallel.py", "rsxai.cli.commands"): "the flag overrides sent to workers",
    ("pipeline/test_cache.py", "rsxai.stages.preprocess"): "patched to fail one subject",
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


MODULES = {_module_name(p): p for p in sorted(SRC.rglob("*.py"))}
FACES = {name for name, path in MODULES.items() if path.name == "__init__.py"}


def _package(module: str) -> str:
    """The subpackage (or top-level module) a module belongs to: rsxai.<this>."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def _imports(path: Path, module: str):
    """(target module, node, inside a function) for every rsxai import of a file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}

    def inside_function(node) -> bool:
        while node in parents:
            node = parents[node]
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                return True
        return False

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node, inside_function(node)
        elif isinstance(node, ast.ImportFrom) and node.module:
            assert node.level == 0, f"{path}: relative import; rsxai imports absolutely"
            # ``from rsxai.pkg import module`` imports that module; a name, the face.
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                yield (sub if sub in MODULES else node.module), node, inside_function(node)


def _edges() -> dict[str, set[str]]:
    """Module -> the rsxai modules its import statements run (faces included)."""
    edges: dict[str, set[str]] = defaultdict(set)
    for module, path in MODULES.items():
        if module in FACES and module != "rsxai":
            # A face runs the modules it re-exports.
            for target, _, _ in _imports(path, module):
                if target in MODULES:
                    edges[module].add(target)
            continue
        for target, _, _ in _imports(path, module):
            if target not in MODULES or target == module:
                continue
            edges[module].add(target)
            # Importing rsxai.pkg.mod first runs rsxai.pkg's face, unless it is our own
            # package (whose face is already being run when one of its modules loads).
            face = ".".join(target.split(".")[:2])
            if face in FACES and face != "rsxai" and _package(face) != _package(module):
                edges[module].add(face)
    return edges


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one node (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in list(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycle_between_modules():
    assert _cycles(_edges()) == []


def test_no_import_cycle_between_packages():
    packages: dict[str, set[str]] = defaultdict(set)
    for module, targets in _edges().items():
        for target in targets:
            if _package(target) != _package(module) and module != "rsxai":
                packages[_package(module)].add(_package(target))
    assert _cycles(packages) == []


def test_no_package_imports_a_higher_floor():
    floor = {package: level for level, packages in enumerate(FLOORS) for package in packages}
    assert set(floor) == {_package(m) for m in MODULES if m != "rsxai"}
    upward = sorted(
        f"{_package(module)} -> {_package(target)}"
        for module, targets in _edges().items()
        for target in targets
        if module != "rsxai" and floor[_package(target)] < floor[_package(module)]
    )
    assert upward == []


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_other_packages_import_a_package_through_its_face():
    through_private = []
    for module, path in MODULES.items():
        for target, node, _ in _imports(path, module):
            if not target.startswith("rsxai.") or target not in MODULES or target in FACES:
                continue
            top_level_module = target.count(".") == 1
            if not top_level_module and _package(target) != _package(module):
                through_private.append(f"{path.relative_to(SRC)}:{node.lineno} {target}")
    assert through_private == []


def test_imports_inside_functions_are_lazy_on_purpose():
    unjustified = []
    for module, path in MODULES.items():
        if _package(module) == "cli":
            continue  # the commands import their stages when run (see cli/commands.py)
        lines = path.read_text(encoding="utf-8").splitlines()
        for target, node, inside in _imports(path, module):
            if not inside:
                continue
            above = lines[node.lineno - 2].strip()
            if not target.startswith(LAZY_LIBRARIES) or not above.startswith("#"):
                unjustified.append(f"{path.relative_to(SRC)}:{node.lineno} {target}")
    assert unjustified == []


def test_tests_import_other_packages_through_their_faces():
    reaching_in = []
    for path in sorted(TESTS.rglob("*.py")):
        rel = path.relative_to(TESTS).as_posix()
        own = rel.split("/")[0] if "/" in rel else None
        for target, node, _ in _imports(path, rel):
            if not target.startswith("rsxai.") or target in FACES or target.count(".") < 2:
                continue
            if _package(target) == own or (rel, target) in WHITE_BOX:
                continue
            reaching_in.append(f"{rel}:{node.lineno} {target}")
    assert reaching_in == []


@pytest.mark.parametrize("face", sorted(FACES - {"rsxai"}))
def test_every_public_name_is_reachable_from_its_face(face):
    module = importlib.import_module(face)
    assert module.__all__, f"{face} has an empty __all__"
    assert len(set(module.__all__)) == len(module.__all__)
    for name in module.__all__:
        assert getattr(module, name) is not None, f"{face}.{name}"


def test_the_top_level_names_load_lazily():
    import subprocess
    import sys

    code = "import sys, rsxai; print('torch' in sys.modules, rsxai.GroupICA.__module__)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.split() == ["False", "rsxai.decomposition.group_ica"], result.stderr
    import rsxai

    for name in rsxai.__all__:
        assert getattr(rsxai, name) is not None
    with pytest.raises(AttributeError, match="no attribute 'nonexistent'"):
        _ = rsxai.nonexistent
