"""The house order (issue 17), checked on the source: who may import whom, no cycles, small files.

Imports are read with ``ast`` from every ``.py`` file of ``kdiag/`` and ``manager/kdiag_manager/``:
module-level ones, ones inside functions, and ones under ``if TYPE_CHECKING:`` alike. A
type-only import is still a dependency (a reader must open that module to understand this one,
and a rename there breaks this one's type check), so every rule here counts it, cycles too:
two modules that need each other's types share a small Protocol in the lower one instead.

An import names a module (``from kdiag.x import y`` names ``kdiag.x.y`` when that is a module of
its own, else ``kdiag.x``). Importing a package's submodule also runs the package's
``__init__``; that implicit step is not an edge (every submodule would otherwise "import" its
package, and each package's ``__init__`` that re-exports a submodule would form a cycle).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = {"kdiag": ROOT / "kdiag", "kdiag_manager": ROOT / "manager" / "kdiag_manager"}
WIRE = "kdiag_manager.wire"
GENERATED = "kdiag_manager.wire.api"
"""protoc's output (``make generate``): not hand-written, not held to the size limit."""
MAX_LINES = 450
LOW_LAYERS = ("kdiag.kube", "kdiag.language")
HIGH_LAYERS = ("kdiag.targets", "kdiag.steps", "kdiag.engine")


@dataclass(frozen=True)
class Import:
    module: str  # the importing module
    target: str  # the module imported (resolved to a file of ours where one exists)
    line: int


def _module_name(package: str, root: Path, path: Path) -> str:
    parts = [package, *path.relative_to(root).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    found = {}
    for package, root in PACKAGES.items():
        for path in sorted(root.rglob("*.py")):
            found[_module_name(package, root, path)] = path
    return found


MODULES = _modules()


def _ours(name: str) -> bool:
    return name.split(".")[0] in PACKAGES


def _imports(module: str, path: Path) -> Iterator[Import]:
    tree = ast.parse(path.read_text(), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if _ours(alias.name):
                    yield Import(module, alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join([*base, *([node.module] if node.module else [])])
            else:
                source = node.module or ""
            if not _ours(source):
                continue
            for alias in node.names:
                submodule = f"{source}.{alias.name}"
                yield Import(module, submodule if submodule in MODULES else source, node.lineno)


IMPORTS = [imp for module, path in MODULES.items() for imp in _imports(module, path)]


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def test_the_cli_reaches_the_manager_only_through_the_wire_package() -> None:
    bad = [f"{i.module}:{i.line} imports {i.target}" for i in IMPORTS
           if _within(i.module, "kdiag") and _within(i.target, "kdiag_manager")
           and not _within(i.target, WIRE)]
    assert not bad, "the CLI may import only kdiag_manager.wire:\n" + "\n".join(bad)


def test_the_wire_package_stands_alone() -> None:
    bad = [f"{i.module}:{i.line} imports {i.target}" for i in IMPORTS
           if _within(i.module, WIRE) and not _within(i.target, WIRE)
           and i.target != "kdiag_manager"]
    assert not bad, "kdiag_manager.wire imports nothing else of the manager:\n" + "\n".join(bad)


def test_the_manager_never_imports_the_cli() -> None:
    bad = [f"{i.module}:{i.line} imports {i.target}" for i in IMPORTS
           if _within(i.module, "kdiag_manager") and _within(i.target, "kdiag")]
    assert not bad, "\n".join(bad)


def test_kube_and_language_import_nothing_above_them() -> None:
    bad = [f"{i.module}:{i.line} imports {i.target}" for i in IMPORTS
           if any(_within(i.module, low) for low in LOW_LAYERS)
           and any(_within(i.target, high) for high in HIGH_LAYERS)]
    assert not bad, "kdiag/kube and kdiag/language sit below targets, steps and engine:\n" \
        + "\n".join(bad)


def _cycles() -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    edges: dict[str, set[str]] = {m: set() for m in MODULES}
    for i in IMPORTS:
        if i.target in MODULES and i.target != i.module:
            edges[i.module].add(i.target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycles() -> None:
    cycles = _cycles()
    assert not cycles, "modules that import each other (also under TYPE_CHECKING):\n" + \
        "\n".join(" <-> ".join(c) for c in cycles)


def test_no_large_rooms() -> None:
    sizes = {module: len(path.read_text().splitlines()) for module, path in MODULES.items()
             if not _within(module, GENERATED)}
    large = sorted(f"{MODULES[m].relative_to(ROOT)}: {n} lines" for m, n in sizes.items()
                   if n > MAX_LINES)
    assert not large, f"hand-written files over {MAX_LINES} lines (split along a seam):\n" + \
        "\n".join(large)


def test_the_checks_see_the_tree() -> None:
    """Guards the guard: the walk finds both packages, the wire package and its imports."""
    assert "kdiag.cli.main" in MODULES and "kdiag_manager.server" in MODULES
    assert f"{WIRE}.frames" in MODULES and f"{GENERATED}.v1.manager_pb2" in MODULES
    assert any(_within(i.module, "kdiag") and _within(i.target, WIRE) for i in IMPORTS)


def _section(path: Path, heading: str) -> str:
    """The text under ``heading`` (a ``##`` line) up to the next ``##`` heading."""
    text = path.read_text()
    start = text.index(f"\n{heading}\n")
    end = text.find("\n## ", start + len(heading) + 2)
    return text[start:end if end != -1 else len(text)]


def _named(section: str) -> set[str]:
    """Every name in backquotes in a section (a table cell may list several)."""
    return {part.strip() for quoted in section.split("`")[1::2] for part in quoted.split(",")}


def test_the_layout_tables_name_every_room() -> None:
    """A newcomer finds a room by its name: the README's "How it works" table names every
    folder and top-level module of ``kdiag/``, and ``manager/README.md``'s layout every
    hand-written module of the manager."""
    how = _named(_section(ROOT / "README.md", "## How it works"))
    kdiag = ROOT / "kdiag"
    rooms = {f"kdiag/{p.name}/" for p in kdiag.iterdir() if (p / "__init__.py").exists()}
    rooms |= {f"kdiag/{p.name}" for p in kdiag.glob("*.py")
              if p.name not in ("__init__.py", "__main__.py")}
    assert not rooms - how, f"README's How it works lacks {sorted(rooms - how)}"
    layout = _named(_section(ROOT / "manager" / "README.md", "## Layout"))
    manager = PACKAGES["kdiag_manager"]
    modules = {str(MODULES[m].relative_to(manager)) for m in MODULES
               if _within(m, "kdiag_manager") and not _within(m, GENERATED)
               and MODULES[m].name != "__init__.py"}
    assert not modules - layout, f"manager/README.md's layout lacks {sorted(modules - layout)}"
    rows = "\n".join(line for line in _section(ROOT / "manager" / "README.md", "## Layout")
                     .splitlines() if line.startswith("| `"))
    gone = {name for name in _named(rows) if name.endswith(".py")} - modules
    assert not gone, f"manager/README.md's layout names modules that are gone: {sorted(gone)}"
    folders = {line.split("`")[1] for line in _section(ROOT / "README.md", "## How it works")
               .splitlines() if line.startswith("| `")}
    gone = {name for name in folders if not (ROOT / name).exists()}
    assert not gone, f"README's How it works names what is gone: {sorted(gone)}"
