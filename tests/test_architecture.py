"""The layout holds: imports flow one way (no cycles), Ray stays in its corner, light modules stay light.

The import graph is read from the sources (AST), function-local imports included, so a cycle hidden inside a
function body fails here rather than at run time. Imports under `if TYPE_CHECKING:` never execute and are left
out. The weight checks start a fresh interpreter, because this one has imported everything already.
"""
from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("seg", "search", "bench")
RAY_HOME = "search.tune"  # the one subpackage that imports Ray
# ...and its one Ray-free module: Tune's folder layout and file names, which the records, the experiment folder and
# search.export read through it (like Ray's own tune/result.py)
TUNE_LAYOUT = "search.tune.layout"
RAY_WIRING = {"search.run"}  # the entry point that wires it in
# benchmarks that drive the search's own searcher and scheduler objects (no Ray started), as Tune would
TUNE_DRIVERS = {"bench.replay"}
MAX_MODULE_LINES = 400  # outside tests, a longer module does several jobs: split it by job
MAX_FUNCTION_LINES = 60  # in SHORT_FUNCTION_PACKAGES: def line to last line, decorators not counted
SHORT_FUNCTION_PACKAGES = ("search.report",)
REPORT = "search.report"
REPORT_NEVER_IMPORTS = ("ray", "torch", "torchvision", "search.tune", "search.run")  # it reads results only


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


SOURCES = {module_name(p): p for pkg in PACKAGES for p in sorted((REPO / pkg).rglob("*.py"))}


def _type_checking_lines(tree: ast.AST) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def imports_of(name: str) -> set[str]:
    """Every module `name` imports anywhere in its source (top level and function bodies), absolute names."""
    path = SOURCES[name]
    tree = ast.parse(path.read_text(), str(path))
    skip = _type_checking_lines(tree)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in skip:
            continue
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            for a in node.names:  # `from pkg import submodule` depends on the submodule
                out.add(f"{base}.{a.name}" if f"{base}.{a.name}" in SOURCES else base)
    return out


GRAPH = {m: {i for i in imports_of(m) if i in SOURCES and i != m} for m in SOURCES}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles():
    found = cycles(GRAPH)
    assert not found, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in found)


def test_ray_is_imported_only_in_its_subpackage_and_the_entry_point():
    bad = {m: sorted(i for i in imports_of(m) if i == "ray" or i.startswith("ray."))
           for m in SOURCES if m != RAY_HOME and not m.startswith(RAY_HOME + ".") and m not in RAY_WIRING}
    bad = {m: i for m, i in bad.items() if i}
    assert not bad, f"Ray imported outside {RAY_HOME}/ and {sorted(RAY_WIRING)}: {bad}"


def test_seg_never_imports_ray_optuna_or_search():
    bad = {m: sorted(i for i in imports_of(m) if i.split(".")[0] in ("ray", "optuna", "search"))
           for m in SOURCES if m.split(".")[0] == "seg"}
    assert not {m: i for m, i in bad.items() if i}


def test_the_tune_package_is_not_imported_from_below():
    """Only run.py reaches into search.tune; nothing the tune code relies on imports it back."""
    users = sorted(m for m in SOURCES if not m.startswith(RAY_HOME) and m not in RAY_WIRING | TUNE_DRIVERS
                   and any(i.startswith(RAY_HOME) and i not in (RAY_HOME, TUNE_LAYOUT) for i in GRAPH[m]))
    assert not users


@pytest.mark.parametrize("modules", [
    ["search.space"], ["search.vocab"], ["search.records"], ["search.tables"], ["search.report"],
    ["search.seeds"], ["search.experiment"], [TUNE_LAYOUT], ["search.status"], ["search.grow"],
    ["search.report.live"], ["seg.config"], ["seg.data", "seg.data.classes"], ["seg.models"],
])
def test_light_modules_load_neither_ray_nor_torch(modules):
    code = ("import json, sys\n" + "".join(f"import {m}\n" for m in modules) +
            "print(json.dumps(sorted(m for m in ('ray', 'torch', 'optuna') if m in sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [], f"importing {modules} loaded heavy packages"


def test_no_module_is_over_the_line_limit():
    long = [f"{m} ({n} lines)" for m, p in SOURCES.items() if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES]
    assert not long, f"modules over {MAX_MODULE_LINES} lines (split them by job): {long}"


def test_models_do_not_import_the_data():
    """A model takes its class count as an argument; it does not know where the data comes from."""
    bad = {m: sorted(i for i in GRAPH[m] if in_package(i, "seg.data")) for m in SOURCES if in_package(m, "seg.models")}
    assert not {m: i for m, i in bad.items() if i}, f"seg/models imports seg/data: {bad}"


def tune_file_names() -> dict[str, str]:
    """Tune's and the checkpoints' file names, as search.tune.layout declares them."""
    import search.tune.layout as layout

    return {name: getattr(layout, name) for name in TUNE_FILE_CONSTANTS}


# MASKS_FILE ("masks.npz") is left out: seg.train's run folder has its own masks.npz, which is not Tune's.
TUNE_FILE_CONSTANTS = ("PARAMS_FILE", "RESULT_FILE", "ERROR_FILE", "STATE_FILE", "RESUME_FILE", "OOM_MARKER",
                       "CHECKPOINT_GLOB")


def string_literals(source: str) -> list[str]:
    """Every string constant of `source` except docstrings (prose may name a file)."""
    tree = ast.parse(source)
    docs = {id(n.body[0].value) for n in ast.walk(tree)
            if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and n.body
            and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
    return [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)
            and id(n) not in docs]


def test_the_literal_finder_skips_docstrings():
    assert string_literals('"""doc: params.json"""\ndef f():\n    "doc"\n    return "result.json"\n') == [
        "result.json"]


def test_tune_file_names_are_spelled_only_in_search_tune():
    names = tune_file_names()
    found = [f"{m}: {lit!r} ({const})" for m, p in SOURCES.items() if not in_package(m, RAY_HOME)
             for lit in string_literals(p.read_text()) for const, name in names.items() if name in lit]
    assert not found, f"Tune's file names outside {RAY_HOME}/ (use {TUNE_LAYOUT}'s constants): {found}"


def long_functions(source: str, limit: int = MAX_FUNCTION_LINES) -> list[tuple[str, int]]:
    """(name, lines) of every function or method in `source` longer than `limit` lines (end_lineno - lineno + 1)."""
    return [(n.name, n.end_lineno - n.lineno + 1) for n in ast.walk(ast.parse(source))
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.end_lineno - n.lineno + 1 > limit]


def in_package(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def test_the_long_function_finder_finds_one():
    body = "".join(f"        x = {i}\n" for i in range(MAX_FUNCTION_LINES))  # a method's body
    assert long_functions(f"def short():\n    pass\n\nclass C:\n    def long(self):\n{body}") == [
        ("long", MAX_FUNCTION_LINES + 1)]


def test_report_functions_are_short():
    found = [f"{m}.{name} ({n} lines)" for m, p in SOURCES.items()
             if any(in_package(m, pkg) for pkg in SHORT_FUNCTION_PACKAGES) for name, n in long_functions(p.read_text())]
    assert not found, f"functions over {MAX_FUNCTION_LINES} lines: {found}"


def test_the_report_package_imports_neither_ray_torch_nor_the_search_driver():
    modules = [m for m in SOURCES if in_package(m, REPORT)]
    assert SOURCES[REPORT].name == "__init__.py" and len(modules) > 1
    bad = {m: sorted(i for i in imports_of(m) if any(in_package(i, x) for x in REPORT_NEVER_IMPORTS)) for m in modules}
    assert not {m: i for m, i in bad.items() if i}, f"the report imports {REPORT_NEVER_IMPORTS}"
