"""The layer rules of docs/architecture.md, checked on the source (every import, module-level and in-function).

- no import cycle between the modules of `landscape_sweep/` and `hydra_plugins/`;
- no private name (`_x`) of one module used by another (`from m import _x`, `m._x`), nor a private module used from
  outside its package;
- an in-function import only for an optional or heavy dependency (`OPTIONAL`), or with a comment giving its reason
  on its line, on its block of imports or on the line above that block;
- no module imports one of a layer above its own (the "Layer order" lists of docs/architecture.md).
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from dataclasses import dataclass
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("landscape_sweep", "hydra_plugins")
DOC = ROOT / "docs" / "architecture.md"

# third-party packages an in-function import may defer without a comment: optional extras, or heavy imports that most
# commands never need (the CLI's start-up time)
OPTIONAL = {
    "wandb": "optional (logger.name=wandb) and slow to import",
    "wandb_workspaces": "optional (the dashboard command)",
    "matplotlib": "heavy: figures only",
    "pandas": "heavy: the report only",
    "scipy": "heavy: statistics only",
    "sklearn": "optional: the digits dataset only",
    "mnist1d": "optional: the mnist1d dataset only",
    "torchvision": "heavy: the torchvision datasets only",
    "submitit": "the SLURM launcher's job side only",
    "cloudpickle": "the SLURM launcher's job side only",
    "joblib": "the joblib launcher only",
    "pyhessian": "optional cross-check only",
}


@dataclass(frozen=True)
class Import:
    module: str  # the importing module
    line: int
    target: str  # the imported internal module
    name: str | None  # the name taken from it (None: the module itself)
    in_function: bool


@cache
def modules() -> dict[str, Path]:
    """Every module of the packages, by dotted name (a package by its `__init__.py`)."""
    out = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def internal(name: str) -> str | None:
    """The nearest internal module `name` is in (None: third-party or stdlib)."""
    while name and name not in modules():
        name = name.rpartition(".")[0]
    return name or None


def _base(module: str, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    package = module.split(".")
    if modules()[module].name != "__init__.py":
        package = package[:-1]
    package = package[: len(package) - node.level + 1]
    return ".".join(package + ([node.module] if node.module else []))


def _function_nodes(tree: ast.AST) -> set[int]:
    inside = set()
    for fn in ast.walk(tree):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            inside.update(id(n) for n in ast.walk(fn) if isinstance(n, (ast.Import, ast.ImportFrom)))
    return inside


@cache
def parsed(module: str) -> tuple[ast.Module, frozenset[int], set[int]]:
    """The module's tree, the lines that carry a comment and the ids of its imports inside a function."""
    text = modules()[module].read_text()
    tokens = tokenize.generate_tokens(io.StringIO(text).readline)
    tree = ast.parse(text)
    return tree, frozenset(t.start[0] for t in tokens if t.type == tokenize.COMMENT), _function_nodes(tree)


@cache
def imports() -> list[tuple[str, Import | None, str, ast.Import | ast.ImportFrom]]:
    """Every name every module imports: (the module, the internal import or None, the imported top-level package,
    the statement)."""
    out = []
    for module in modules():
        tree, _, inside = parsed(module)
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                pairs = [(a.name, None) for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _base(module, node)
                pairs = [(f"{base}.{a.name}", None) if f"{base}.{a.name}" in modules() else (base, a.name)
                         for a in node.names]  # fmt: skip
            else:
                continue
            for name, taken in pairs:
                target = internal(name)
                imp = Import(module, node.lineno, target, taken, id(node) in inside) if target else None
                out.append((module, imp, name.partition(".")[0], node))
    return out


def graph() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {m: set() for m in modules()}
    for _, imp, _, _ in imports():
        if imp is not None and imp.target != imp.module:
            edges[imp.module].add(imp.target)
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found = []
    for root in edges:
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(edges[w]))))
                elif w in on:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    found.append(sorted(comp))
    return found


def private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def private_module_outside(target: str, importer: str) -> bool:
    """Whether `target` lies in a private module (or package) that `importer` is outside of."""
    parts = target.split(".")
    for i, part in enumerate(parts):
        if private(part) and not (importer + ".").startswith(".".join(parts[:i]) + "."):
            return True
    return False


def test_no_import_cycle() -> None:
    found = cycles(graph())
    assert not found, "import cycles: " + "; ".join(" <-> ".join(c) for c in found)


def test_no_private_name_crosses_a_module() -> None:
    bad = []
    for _, imp, _, _ in imports():
        if imp is None or imp.target == imp.module:
            continue
        if (imp.name is not None and private(imp.name)) or private_module_outside(imp.target, imp.module):
            bad.append(f"{imp.module}:{imp.line} imports {imp.target}{'.' + imp.name if imp.name else ''}")
    for module in modules():
        tree, _, _ = parsed(module)
        bound = _module_names(module, tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in bound:
                target = bound[node.value.id]
                if private(node.attr) and target != module:
                    bad.append(f"{module}:{node.lineno} uses {target}.{node.attr}")
    assert not bad, "\n".join(bad)


def _module_names(module: str, tree: ast.Module) -> dict[str, str]:
    """The names this module binds to internal modules (`from p import m`, `import p.m as m`)."""
    bound = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.asname and a.name in modules():
                    bound[a.asname] = a.name
        elif isinstance(node, ast.ImportFrom):
            base = _base(module, node)
            for a in node.names:
                if f"{base}.{a.name}" in modules():
                    bound[a.asname or a.name] = f"{base}.{a.name}"
    return bound


def test_in_function_imports_say_why() -> None:
    bad = []
    for module, _, top, node in imports():
        if top in OPTIONAL or id(node) not in parsed(module)[2]:
            continue
        if not _commented(module, node):
            bad.append(f"{module}:{node.lineno} imports {top}... in a function without a comment saying why")
    assert not bad, "\n".join(sorted(set(bad)))


def _commented(module: str, node: ast.Import | ast.ImportFrom) -> bool:
    """Whether a comment is on the import's lines, on another import of its block (consecutive imports, blank lines
    between them allowed) or on the line above that block."""
    tree, comments, inside = parsed(module)
    import_lines = {
        line for n in ast.walk(tree) if id(n) in inside for line in range(n.lineno, (n.end_lineno or n.lineno) + 1)
    }
    lines = modules()[module].read_text().splitlines()

    def next_import(line: int, step: int) -> int | None:  # the import line past any blank lines, else None
        line += step
        while 1 <= line <= len(lines) and not lines[line - 1].strip():
            line += step
        return line if line in import_lines else None

    first, last = node.lineno, node.end_lineno or node.lineno
    while (up := next_import(first, -1)) is not None:
        first = up
    while (down := next_import(last, 1)) is not None:
        last = down
    return bool(comments & set(range(first - 1, last + 1)))


def layer_order() -> tuple[dict[str, int], dict[str, int]]:
    """(layer of each top-level unit, layer of each `pipeline/` module) from docs/architecture.md's numbered lists
    under "## Layer order" and "### Inside `pipeline/`" (1 = the bottom)."""
    text = DOC.read_text()
    section = text.split("## Layer order", 1)[1].split("\n## ", 1)[0]
    units_text, _, pipeline_text = section.partition("### Inside `pipeline/`")

    def numbered(block: str) -> dict[str, int]:
        out = {}
        for m in re.finditer(r"^(\d+)\. (.*)$", block, re.M):
            out.update({name.strip("/"): int(m.group(1)) for name in re.findall(r"`([^`]+)`", m.group(2))})
        return out

    return numbered(units_text), numbered(pipeline_text)


def unit(module: str) -> str:
    """The top-level unit a module belongs to: `hydra_plugins`, a subpackage, or a top-level module of the package
    (`landscape_sweep` for its `__init__`)."""
    parts = module.split(".")
    return parts[0] if parts[0] == "hydra_plugins" or len(parts) == 1 else parts[1]


def pipeline_name(module: str) -> str | None:
    parts = module.split(".")
    if parts[:2] != ["landscape_sweep", "pipeline"]:
        return None
    return parts[2] if len(parts) > 2 else "__init__"


def test_docs_state_a_layer_for_every_module() -> None:
    units, pipeline = layer_order()
    missing = {unit(m) for m in modules()} - set(units)
    missing |= {f"pipeline/{p}" for m in modules() if (p := pipeline_name(m)) and p not in pipeline}
    assert not missing, f"not in the layer lists of docs/architecture.md: {sorted(missing)}"


def test_no_module_imports_a_layer_above_its_own() -> None:
    units, pipeline = layer_order()
    bad = []
    for a, targets in graph().items():
        for b in targets:
            if units[unit(a)] < units[unit(b)]:
                bad.append(f"{a} ({unit(a)}: layer {units[unit(a)]}) imports {b} (layer {units[unit(b)]})")
            elif (pa := pipeline_name(a)) and (pb := pipeline_name(b)) and pipeline[pa] < pipeline[pb]:
                bad.append(f"{a} (pipeline layer {pipeline[pa]}) imports {b} (pipeline layer {pipeline[pb]})")
    assert not bad, "\n".join(bad)


def test_the_checks_see_a_cycle_and_a_private_name() -> None:
    """The cycle finder and the privacy rule themselves, on made-up input."""
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
    assert private("_build") and not private("__version__") and not private("build")
    assert private_module_outside("landscape_sweep.landscape._core", "landscape_sweep.pipeline.cell")
    assert not private_module_outside("landscape_sweep.landscape._core", "landscape_sweep.landscape.paths")
