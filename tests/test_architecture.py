"""The package layers point one way, and the product declares exactly what it imports.

gateway ──▶ observability ──▶ (third-party packages)
trinosim (the test kit, [sim] extra) ──▶ runs gateway as a process, never imports it
tests, chaos, bench ──▶ anything
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
STDLIB = set(sys.stdlib_module_names)


def _imports(package: str) -> dict[str, set[str]]:
    """Module file -> every module it imports (absolute names, as written)."""
    out: dict[str, set[str]] = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module)
        out[str(path.relative_to(ROOT))] = names
    return out


def _top(name: str) -> str:
    return name.split(".", 1)[0]


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        ("observability", {"gateway", "trinosim", "tests", "chaos", "bench"}),
        ("gateway", {"trinosim", "tests", "chaos", "bench"}),
        ("trinosim", {"gateway", "observability", "tests", "chaos", "bench"}),
    ],
)
def test_packages_import_one_way(package, forbidden):
    wrong = {
        f"{module} imports {name}"
        for module, names in _imports(package).items()
        for name in names
        if _top(name) in forbidden
    }
    assert not wrong, sorted(wrong)


def _requirement_name(requirement: str) -> str:
    return re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0].lower()


def _declared() -> tuple[set[str], dict[str, set[str]]]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = {
        extra: {_requirement_name(r) for r in requirements}
        for extra, requirements in project["optional-dependencies"].items()
    }
    return {_requirement_name(r) for r in project["dependencies"]}, extras


# What each declared distribution is imported as.
MODULES_OF: dict[str, tuple[str, ...]] = {
    "opentelemetry-api": ("opentelemetry.trace", "opentelemetry.context"),
}
MODULE_OF = {
    "granian": "granian",
    "hypercorn": "hypercorn",
    "uvloop": "uvloop",
    "quart": "quart",
    "werkzeug": "werkzeug",
    "httptools": "httptools",
    "httpx": "httpx",
    "opentelemetry-instrumentation-httpx": "opentelemetry.instrumentation.httpx",
    "orjson": "orjson",
    "pydantic": "pydantic",
    "sqlalchemy": "sqlalchemy",
    "alembic": "alembic",
    "pyyaml": "yaml",
    "lark": "lark",
    "regex": "regex",
    "pyjwt": "jwt",
    "sqlglot": "sqlglot",
    "bcrypt": "bcrypt",
    "ldap3": "ldap3",
    "authlib": "authlib",
    "prometheus-client": "prometheus_client",
    "opentelemetry-sdk": "opentelemetry.sdk",
    "opentelemetry-exporter-otlp-proto-http": "opentelemetry.exporter.otlp.proto.http",
    "opentelemetry-exporter-otlp-proto-grpc": "opentelemetry.exporter.otlp.proto.grpc",
    "aiohttp": "aiohttp",
    "duckdb": "duckdb",
    "opentelemetry-proto": "opentelemetry.proto",
    "zstandard": "zstandard",
    "lz4": "lz4",
}
# Declared, and loaded by another package on the gateway's behalf rather than imported by name.
LOADED_FOR_US = {
    "aiosqlite": "SQLAlchemy's sqlite+aiosqlite dialect, for sqlite:/// store URLs",
    "asyncpg": "SQLAlchemy's postgresql+asyncpg dialect, for postgresql:// store URLs",
    "tpchgen-cli": "a program trinosim runs to generate the TPC-H data (trinosim/catalog.py)",
}


def _imported_by(*packages: str) -> set[str]:
    return {name for package in packages for names in _imports(package).values() for name in names}


def _modules(distribution: str) -> tuple[str, ...]:
    return MODULES_OF.get(distribution) or (MODULE_OF[distribution],)


def _uses(imported: set[str], distribution: str) -> bool:
    return any(name == m or name.startswith(m + ".") for m in _modules(distribution) for name in imported)


def test_every_declared_dependency_is_imported_by_the_code_that_needs_it():
    core, extras = _declared()
    product = _imported_by("gateway", "observability")
    kit = _imported_by("trinosim")
    unused = [d for d in core if d not in LOADED_FOR_US and not _uses(product, d)]
    assert not unused, f"declared by the product, imported by nothing in gateway/ or observability/: {unused}"
    unused_sim = [d for d in extras["sim"] if d not in LOADED_FOR_US and not _uses(kit, d)]
    assert not unused_sim, f"declared by [sim], imported by nothing in trinosim/: {unused_sim}"
    # The gateway needs neither the simulator's database nor its data generator.
    assert not core & {"duckdb", "tpchgen-cli"}


def test_everything_the_product_imports_is_declared():
    core, extras = _declared()
    own = {"gateway", "observability", "trinosim", "tests", "chaos", "bench"}
    declared_modules = {m for d in core if d not in LOADED_FOR_US for m in _modules(d)}
    for label, packages, modules in (
        ("gateway/, observability/", ("gateway", "observability"), declared_modules),
        (
            "trinosim/",
            ("trinosim",),
            declared_modules | {m for d in extras["sim"] if d not in LOADED_FOR_US for m in _modules(d)},
        ),
    ):
        undeclared = sorted(
            name
            for name in _imported_by(*packages)
            if _top(name) not in STDLIB | own
            and not any(name == m or name.startswith(m + ".") or m.startswith(name + ".") for m in modules)
            # multidict and yarl come with aiohttp and are its public types
            and _top(name) not in {"multidict", "yarl"}
        )
        assert not undeclared, f"{label} imports what is not declared: {undeclared}"


# The layers inside gateway/, top to bottom (docs/architecture.md draws them): a module imports from
# its own layer or the ones below it, never from one above. Within one layer, the packages named
# together may not import each other.
LAYERS: list[tuple[str, ...]] = [
    ("node",),  # the process: CLI, ASGI entry, a worker's services, shutdown
    ("control",),  # the admin API, the web UI, the audit trail, operator views and commands
    ("dataplane",),  # the Trino protocol through the gateway: forwarding, held queries, rewriting
    ("clusters",),  # cluster management: scalers, cluster states, the autoscaler
    ("queries",),  # the queries the gateway owns: book, transactions, history, admission
    ("cache",),  # the result cache: eligibility, keys, entries and their storage
    ("routing",),  # which group and which backend: rules, decider, routers, scoring
    ("backends",),  # each worker's list of backends, and their health
    ("auth", "upstream"),  # who a caller is; talking to backends
    ("config",),  # typed configuration
    ("store",),  # the records and where they are kept (the backend's record among them)
    ("errors",),  # Trino's error documents
]


def _layer_of(module: str) -> tuple[int, str] | None:
    parts = module.split(".")
    if parts[0] != "gateway" or len(parts) < 2:
        return None
    for index, names in enumerate(LAYERS):
        if parts[1] in names:
            return index, parts[1]
    return None


def _gateway_imports(path: Path) -> set[str]:
    """Every absolute gateway import of a module, type annotations' (``if TYPE_CHECKING``) included: a
    name a module uses, even only to annotate, is a dependency."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # ``from a.b import c``: module a.b.c if there is one, else a name of a.b (``_module_of``).
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in names if name.startswith("gateway.")}


def test_every_gateway_module_belongs_to_a_layer():
    top = ROOT / "gateway"
    loose = {
        path.name
        for path in top.iterdir()
        if path.name not in {"__init__.py", "__main__.py", "__pycache__"} and _layer_of(f"gateway.{path.stem}") is None
    }
    assert not loose, f"gateway/ entries in no layer (tests/test_architecture.py LAYERS): {sorted(loose)}"


def test_layers_inside_the_gateway_import_downwards_only():
    wrong: list[str] = []
    for path in sorted((ROOT / "gateway").rglob("*.py")):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        own = _layer_of(module)
        if own is None:
            continue
        for name in _gateway_imports(path):
            other = _layer_of(name)
            if other is None:
                continue
            if other[0] < own[0] or (other[0] == own[0] and other[1] != own[1]):
                wrong.append(f"{module} ({LAYERS[own[0]][0]}) imports {name} ({other[1]})")
    assert not wrong, "\n".join(sorted(wrong))


def test_no_two_gateway_modules_import_each_other():
    """Within a layer too, imports form no circle (two modules that need each other are one concept
    or want a third module below both)."""
    graph: dict[str, set[str]] = {}
    for path in sorted((ROOT / "gateway").rglob("*.py")):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        graph[module] = {name for name in _gateway_imports(path)}
    modules = set(graph)
    edges = {m: {_module_of(name, modules) for name in names} - {None, m} for m, names in graph.items()}
    circles = sorted(
        f"{a} <-> {b}"
        for a, targets in edges.items()
        for b in targets
        if b is not None and a < b and a in edges.get(b, set())
    )
    assert not circles, circles


def _module_of(name: str, modules: set[str]) -> str | None:
    """The module an imported name belongs to (``gateway.x.y.Name`` -> ``gateway.x.y``)."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


# The request path stays readable: files a reader takes in whole, methods that do one thing, and no
# method that comes back to itself through others (a query's path through the code reads top-down).
DATAPLANE = ROOT / "gateway" / "dataplane"
MAX_FILE_LINES, MAX_FUNCTION_LINES = 400, 60


def _dataplane_files() -> list[Path]:
    return sorted(DATAPLANE.rglob("*.py"))


def test_no_dataplane_file_is_over_400_lines_and_no_function_over_60():
    long_files = [
        f"{path.name}: {lines}"
        for path in _dataplane_files()
        if (lines := len(path.read_text().splitlines())) > MAX_FILE_LINES
    ]
    long_functions = [
        f"{path.name}:{node.lineno} {node.name}: {node.end_lineno - node.lineno + 1}"
        for path in _dataplane_files()
        for node in ast.walk(ast.parse(path.read_text(), str(path)))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno is not None
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert not long_files and not long_functions, (long_files, long_functions)


def _self_calls(cls: ast.ClassDef) -> dict[str, set[str]]:
    """Each method of ``cls`` -> the methods of ``cls`` it calls on ``self``."""
    methods = {node.name: node for node in cls.body if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)}
    return {
        name: {
            call.func.attr
            for call in ast.walk(method)
            if isinstance(call, ast.Call)
            and isinstance(call.func, ast.Attribute)
            and isinstance(call.func.value, ast.Name)
            and call.func.value.id == "self"
            and call.func.attr in methods
        }
        for name, method in methods.items()
    }


def _loops(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every cycle found by a depth-first walk (each reported from where the walk re-entered it)."""
    found: list[list[str]] = []
    done: set[str] = set()

    def walk(node: str, path: list[str]) -> None:
        for target in sorted(graph.get(node, ())):
            if target in path:
                found.append([*path[path.index(target) :], target])
            elif target not in done:
                walk(target, [*path, target])
        done.add(node)

    for start in sorted(graph):
        if start not in done:
            walk(start, [start])
    return found


def test_the_loop_finder_finds_a_loop():
    assert _loops({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == [["a", "b", "c", "a"]]
    assert _loops({"a": {"b"}, "b": set()}) == []


def test_no_dataplane_methods_call_each_other_in_a_loop():
    loops = [
        f"{path.name} {cls.name}: {' -> '.join(loop)}"
        for path in _dataplane_files()
        for cls in ast.walk(ast.parse(path.read_text(), str(path)))
        if isinstance(cls, ast.ClassDef)
        for loop in _loops(_self_calls(cls))
    ]
    assert not loops, loops
