"""The house's rules, checked on the source tree: where a concept lives and what may import what.

They guard the layout `docs/architecture.md` describes: the line never imports training code,
modules import each other without cycles, no module grows past what one person reads at once,
and the defect taxonomy has one home.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EDGE = ROOT / "edge"
LINE = ("edge.inspect", "edge.line", "edge.capture", "edge.pipeline", "edge.judge", "edge.decide")


def module_name(path: Path) -> str:
    name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
    return name.removesuffix(".__init__")


def top_level_imports(path: Path) -> set[str]:
    """Project modules a module imports when it is imported (not inside a function)."""
    found: set[str] = set()
    tree = ast.parse(path.read_text())
    for node in tree.body:
        stmts = [node]
        if isinstance(node, ast.If):  # `if TYPE_CHECKING:` imports never run
            if "TYPE_CHECKING" in ast.unparse(node.test):
                continue
            stmts = node.body + node.orelse
        if isinstance(node, ast.Try):
            stmts = node.body
        for s in stmts:
            if isinstance(s, ast.ImportFrom) and s.module and s.level == 0:
                if s.module.startswith("edge"):
                    found.add(s.module)
                    found.update(f"{s.module}.{a.name}" for a in s.names)
            elif isinstance(s, ast.Import):
                found.update(a.name for a in s.names if a.name.startswith("edge"))
    return found


def all_imports(path: Path) -> set[str]:
    """Every project module named in an import anywhere in the file (functions included)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return {m for m in found if m.startswith("edge")}


def sources() -> dict[str, Path]:
    return {module_name(p): p for p in EDGE.rglob("*.py")}


def test_nothing_on_the_line_imports_training_code():
    """The line's rule (only an approved model whose files match its card) lives in
    edge/models, not under train/: a line module importing edge.train would run training code."""
    offenders = {
        name: sorted(
            m for m in all_imports(path) if m == "edge.train" or m.startswith("edge.train.")
        )
        for name, path in sources().items()
        if name.startswith(LINE)
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_modules_import_each_other_without_cycles():
    mods = sources()
    graph = {
        name: {m for m in top_level_imports(path) if m in mods and m != name}
        for name, path in mods.items()
    }
    seen: dict[str, int] = {}  # 1: on the stack, 2: done
    cycles: list[list[str]] = []

    def visit(node: str, stack: list[str]) -> None:
        seen[node] = 1
        for dep in sorted(graph[node]):
            if seen.get(dep) == 1:
                cycles.append([*stack[stack.index(dep) :], dep])
            elif dep not in seen:
                visit(dep, [*stack, dep])
        seen[node] = 2

    for name in sorted(graph):
        if name not in seen:
            visit(name, [name])
    assert cycles == []


def test_no_module_is_longer_than_600_lines():
    long = {
        str(p.relative_to(ROOT)): n
        for p in EDGE.rglob("*.py")
        if not p.name.endswith("_pb2.py") and (n := len(p.read_text().splitlines())) > 600
    }
    assert long == {}


def test_each_defect_class_is_defined_once():
    """A class name in quotes appears as a definition only in the taxonomy; elsewhere a module
    names a class only where it draws or weighs that particular defect."""
    from edge import taxonomy

    taxonomy_file = EDGE / "taxonomy.py"
    for cls in taxonomy.DETECTOR_CLASSES:
        if cls == "code":
            continue
        pattern = re.compile(rf"""["']{cls}["']""")
        assert pattern.search(taxonomy_file.read_text()), cls
        lists = [  # a literal list or tuple of several class names outside the taxonomy
            str(p.relative_to(ROOT))
            for p in EDGE.rglob("*.py")
            if p != taxonomy_file
            for node in ast.walk(ast.parse(p.read_text()))
            if isinstance(node, ast.List | ast.Tuple | ast.Set)
            and sum(
                isinstance(e, ast.Constant) and e.value in taxonomy.DETECTOR_CLASSES
                for e in node.elts
            )
            >= 3
        ]
        assert lists == [], f"a class list outside edge/taxonomy.py: {lists}"
