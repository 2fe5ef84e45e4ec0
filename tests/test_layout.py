"""The package's shape: one import name, no cycles, a torch-free client side, one option source."""

from __future__ import annotations

import ast
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.helpers import REPO

# Import name -> folder, as pyproject.toml maps them.
PACKAGES = {
    "impasto": REPO / "shared",
    "impasto.cli": REPO / "shared" / "cli",
    "impasto.watch": REPO / "shared" / "watch",
    "impasto.gimp": REPO / "plugin",
    "impasto.engine": REPO / "daemon" / "engine",
    "impasto.server": REPO / "daemon" / "server",
}
TORCH_SIDE = ("impasto.engine", "impasto.server")  # daemon/: everything that needs torch


def modules() -> dict[str, Path]:
    out = {}
    for pkg, folder in PACKAGES.items():
        for f in folder.glob("*.py"):
            out[pkg if f.stem == "__init__" else f"{pkg}.{f.stem}"] = f
    return out


def imports_at_load(path: Path, name: str) -> set[str]:
    """Modules a module imports when it is loaded (top level, not inside functions)."""
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    pkg = name if path.stem == "__init__" else name.rpartition(".")[0]
    for node in tree.body:
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(pkg.split(".")[: len(pkg.split(".")) - node.level + 1] + [base])
            found.add(base)
            found |= {f"{base}.{a.name}" for a in node.names}
    return found


def test_pyproject_maps_every_package() -> None:
    import tomllib

    cfg = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert {k: REPO / v for k, v in cfg["package-dir"].items()} == PACKAGES
    assert sorted(cfg["packages"]) == sorted(PACKAGES)


def test_no_import_cycles() -> None:
    mods = modules()
    graph = {m: {i for i in imports_at_load(p, m) if i in mods and i != m} for m, p in mods.items()}
    state: dict[str, int] = {}

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                pytest.fail("import cycle: " + " -> ".join(path[path.index(n):] + [n])
                            if n in path else f"import cycle through {m} -> {n}")
            if n not in state:
                visit(n, path + [n])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])


def test_client_side_never_loads_torch() -> None:
    """Every module of the torch-free packages imports, and the client commands run, in an
    interpreter where torch cannot be imported at all."""
    names = sorted(m for m in modules() if not m.startswith(TORCH_SIDE))
    code = (
        "import sys, importlib\n"
        "for blocked in ('torch', 'torchvision'):\n"
        "    sys.modules[blocked] = None  # any import of it raises ImportError\n"
        f"for name in {names!r}:\n"
        "    importlib.import_module(name)\n"
        "from impasto.cli.main import main\n"
        "rc = main(['status', '--address', 'tcp://127.0.0.1:9', '--timeout', '0.2'])\n"
        "assert rc == 3, rc\n"
        "print(len(" f"{names!r}" "))\n")
    r = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    assert int(r.stdout.strip()) >= 20  # really walked the client side
    assert "no impasto daemon answered" in r.stderr


def test_client_modules_do_not_even_mention_torch_at_load() -> None:
    for name, path in modules().items():
        if name.startswith(TORCH_SIDE):
            continue
        loaded = imports_at_load(path, name)
        assert not {i for i in loaded if i.split(".")[0] in ("torch", "torchvision")}, name
        assert not {i for i in loaded if i.startswith(TORCH_SIDE)}, name


@pytest.mark.slow
def test_wheel_installs_one_top_level_package(tmp_path: Path) -> None:
    """`pip install .` puts exactly one import package, impasto, into site-packages."""
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                        "-q", "-w", str(tmp_path), str(REPO)], capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr
    (wheel,) = tmp_path.glob("impasto-*.whl")
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
    top = {n.split("/")[0] for n in names}
    assert {t for t in top if not t.endswith(".dist-info")} == {"impasto"}
    for must in ("impasto/protocol.py", "impasto/cli/main.py", "impasto/engine/transfer.py",
                 "impasto/server/loop.py", "impasto/gimp/bridge.py", "impasto/watch/folder.py",
                 "impasto/gimp/impasto-neural-style/impasto-neural-style.py"):
        assert must in names, must
    entry = next(n for n in names if n.endswith("entry_points.txt"))
    with zipfile.ZipFile(wheel) as z:
        assert "impasto = impasto.cli.main:main" in z.read(entry).decode()


def test_protocol_doc_lists_every_option_as_generated() -> None:
    from impasto.options import markdown_table

    doc = (REPO / "docs" / "protocol.md").read_text()
    begin, end = "<!-- options:begin -->\n", "\n<!-- options:end -->"
    assert begin in doc and end in doc, "docs/protocol.md lacks the generated option table"
    table = doc.split(begin, 1)[1].split(end, 1)[0]
    assert table == markdown_table(), "regenerate with: python -m impasto.options"


def test_every_cli_flag_has_help() -> None:
    from impasto.cli.main import build_parser

    def walk(p):
        for a in p._actions:
            yield p, a
            if a.__class__.__name__ == "_SubParsersAction":
                for sub in a.choices.values():
                    yield from walk(sub)

    missing = [f"{p.prog} {'/'.join(a.option_strings) or a.dest}" for p, a in walk(build_parser())
               if a.help is None and a.dest not in ("help", "command")]
    assert not missing, missing
