"""The package's shape: one import name, no cycles, a torch-free client side, one option source."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.helpers import REPO

# `impasto` is one namespace package spread over the design card's folders: a module's
# import name is its path below one of these roots, with nothing to keep in step.
ROOTS = ("shared", "daemon", "plugin")
TORCH_ROOT = "daemon"  # everything that needs torch, and nothing else


def modules(roots: tuple[str, ...] = ROOTS) -> dict[str, Path]:
    """Import name -> file, found by walking the folders (as the wheel build does)."""
    out: dict[str, Path] = {}
    for root in roots:
        for f in sorted((REPO / root / "impasto").rglob("*.py")):
            parts = f.relative_to(REPO / root).with_suffix("").parts
            if any(not p.isidentifier() for p in parts):
                continue  # the GIMP plug-in file (impasto-neural-style.py) is not a module
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            assert name not in out, f"{name} is defined in two roots: {out[name]} and {f}"
            out[name] = f
    return out


TORCH_SIDE = tuple(modules((TORCH_ROOT,)))


def imports_at_load(path: Path, name: str) -> set[str]:
    """Modules a module imports when it is loaded (top level, not inside functions)."""
    return _imports(path, name, everywhere=False)


def all_imports(path: Path, name: str) -> set[str]:
    """Every module a file imports, at load and inside functions alike."""
    return _imports(path, name, everywhere=True)


def _imports(path: Path, name: str, everywhere: bool) -> set[str]:
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    pkg = name if path.stem == "__init__" else name.rpartition(".")[0]
    for node in ast.walk(tree) if everywhere else tree.body:
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(pkg.split(".")[: len(pkg.split(".")) - node.level + 1] + [base])
            found.add(base)
            found |= {f"{base}.{a.name}" for a in node.names}
    return found


def test_every_folder_is_its_import_name() -> None:
    """impasto itself is a namespace in every root (an __init__.py in one would hide the
    other two); every folder below it with modules is a regular package; the wheel takes
    the three roots whole."""
    import tomllib

    for root in ROOTS:
        assert not (REPO / root / "impasto" / "__init__.py").exists(), root
        for d in (REPO / root / "impasto").rglob("*"):
            if d.is_dir() and d.name != "__pycache__" and d.name.isidentifier() \
                    and any(d.glob("*.py")):
                assert (d / "__init__.py").is_file(), f"{d} lacks __init__.py"
    cfg = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["hatch"]["build"]
    assert cfg["targets"]["wheel"]["packages"] == [f"{r}/impasto" for r in ROOTS]
    assert cfg["dev-mode-dirs"] == list(ROOTS)
    mods = modules()
    assert len(mods) >= 50 and "impasto.engine.transfer" in mods and "impasto.gimp.bridge" in mods


def test_no_import_cycles() -> None:
    """No module imports one that imports it back, counting the imports inside functions
    too: one there closes the circle as surely, only later (cli.remote's send importing
    cli.clip, which imported cli.remote, went unseen while only the top level counted)."""
    mods = modules()
    graph = {m: {i for i in all_imports(p, m) if i in mods and i != m} for m, p in mods.items()}
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
    # The plug-in's parts run inside GIMP only (they import gi and one another by the
    # names they have beside the plug-in): test_gimp.py imports them there.
    names = sorted(m for m in modules()
                   if not m.startswith(TORCH_SIDE) and not m.endswith("__main__")
                   and not m.startswith("impasto.gimp.ingimp."))
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


def build_wheel(src: Path, out: Path) -> list[str]:
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                        "-q", "-w", str(out), str(src)], capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr
    (wheel,) = out.glob("impasto-*.whl")
    with zipfile.ZipFile(wheel) as z:
        return z.namelist() + [f"{n}::" + z.read(n).decode() for n in z.namelist()
                               if n.endswith("entry_points.txt")]


@pytest.mark.slow
def test_wheel_holds_every_module_and_a_new_subpackage(tmp_path: Path) -> None:
    """The wheel of a copy of this tree, with a subpackage added that no list names,
    holds one import package, impasto, with every module (the new ones included), the
    plug-in file and the console script."""
    src = tmp_path / "src"
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(
        ".venv", ".git", "__pycache__", "*.egg-info", "build", "dist", ".*_cache", "out"))
    new = src / "daemon" / "impasto" / "brandnew" / "deeper"
    new.mkdir(parents=True)
    for d in (new, new.parent):
        (d / "__init__.py").write_text('"""added by the test"""\n')
    (new / "mod.py").write_text("X = 1\n")
    names = build_wheel(src, tmp_path / "wheel")
    top = {n.split("/")[0] for n in names if "::" not in n}
    assert {t for t in top if not t.endswith(".dist-info")} == {"impasto"}
    want = [f"impasto/{p.relative_to(REPO / root / 'impasto')}" for root in ROOTS
            for p in (REPO / root / "impasto").rglob("*.py") if "__pycache__" not in p.parts]
    want += ["impasto/brandnew/__init__.py", "impasto/brandnew/deeper/mod.py",
             "impasto/gimp/impasto-neural-style/impasto-neural-style.py"]
    missing = [w for w in want if w not in names]
    assert not missing, missing
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    assert any("impasto = impasto.cli.main:main" in n for n in names if "::" in n)


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


def first_party_imports() -> list[tuple[Path, int, int, str]]:
    """(file, line, column, module) of every `impasto...` module named by an import in
    daemon/, shared/ and plugin/, the column being that of the name's last character:
    `from impasto.engine.vgg import X` names impasto.engine.vgg, `from impasto import
    paths` names impasto.paths, `import impasto.watch.layout` names that."""
    mods = modules()
    found = []
    for path in mods.values():
        lines = path.read_text().splitlines()

        def at(line: int, start: int, name: str, lines: list[str] = lines) -> tuple[int, int]:
            col = lines[line - 1].index(name, start)
            return line, col + len(name) - 1

        for node in ast.walk(ast.parse("\n".join(lines))):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module \
                    and node.module.split(".")[0] == "impasto":
                if node.module in mods:
                    found.append((path, *at(node.lineno, node.col_offset, node.module),
                                  node.module))
                for a in node.names:
                    sub = f"{node.module}.{a.name}"
                    if sub in mods:
                        found.append((path, *at(a.lineno, a.col_offset, a.name), sub))
            elif isinstance(node, ast.Import):
                for a in node.names:
                    if a.name.split(".")[0] == "impasto":
                        found.append((path, *at(a.lineno, a.col_offset, a.name), a.name))
    return found


@pytest.mark.slow
def test_static_resolver_follows_every_first_party_import() -> None:
    """jedi (a static resolver: it reads files, runs no import hook) goes from every
    first-party import to the module's file in this tree, through the environment the
    README's set-up makes. Setuptools' editable install for a package mapped onto other
    folders is an import hook, which jedi and pyright cannot follow."""
    jedi = pytest.importorskip("jedi")
    env = jedi.create_environment(sys.executable, safe=False)
    # smart_sys_path off: only the environment's own path counts, not the checkout's root.
    project = jedi.Project(REPO, environment_path=sys.executable, smart_sys_path=False)
    mods = modules()
    imports = first_party_imports()
    assert len(imports) >= 150, len(imports)  # really walked the tree
    scripts: dict[Path, object] = {}
    unresolved = []
    for path, line, col, name in imports:
        script = scripts.get(path) or scripts.setdefault(
            path, jedi.Script(path=str(path), project=project, environment=env))
        where = {Path(d.module_path).resolve() for d in script.goto(line, col) if d.module_path}
        if mods[name].resolve() not in where:
            unresolved.append(f"{path.relative_to(REPO)}:{line} {name} -> {where or 'nothing'}")
    assert not unresolved, f"{len(unresolved)} of {len(imports)} unresolved:\n" + "\n".join(
        unresolved[:20])


def _attribute_uses(path: Path) -> list[tuple[ast.AST, list[ast.AST]]]:
    """Every attribute node of a module, with the chain of nodes that encloses it."""
    out: list[tuple[ast.AST, list[ast.AST]]] = []

    def walk(node: ast.AST, chain: list[ast.AST]) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Attribute):
                out.append((child, chain))
            walk(child, chain + [child])

    walk(ast.parse(path.read_text()), [])
    return out


# The watch folder's modules beside the journal: the folder and its kinds' handlers.
WATCH_MODULES = ("impasto.watch.folder", "impasto.watch.job", "impasto.watch.still",
                 "impasto.watch.video")


@pytest.mark.parametrize("name", WATCH_MODULES)
def test_watch_folder_reaches_the_folder_only_through_its_journal(name: str) -> None:
    """The folder and its handlers never hold the confined tree: every move goes through
    the Journal."""
    path = modules()[name]
    uses = [n.lineno for n, _ in _attribute_uses(path) if n.attr in ("tree", "_tree")]
    assert not uses, f"{path.name} touches the tree at lines {uses}"


@pytest.mark.parametrize("name", WATCH_MODULES)
def test_watch_folder_fault_is_written_under_its_lock(name: str) -> None:
    """Sender, dispatch and guard threads all report faults: each write of self.fault
    (outside __init__) sits inside `with self._lock`."""
    path = modules()[name]
    bad = []
    for node, chain in _attribute_uses(path):
        if node.attr != "fault" or not isinstance(node.ctx, ast.Store):
            continue
        func = next(c for c in reversed(chain) if isinstance(c, ast.FunctionDef))
        locked = any(isinstance(c, ast.With) and "self._lock" in ast.unparse(c.items[0])
                     for c in chain)
        if func.name != "__init__" and not locked:
            bad.append(node.lineno)
    assert not bad, f"self.fault written without the lock at lines {bad}"


def test_socket_loop_knows_no_engine() -> None:
    """The daemon's socket front (loop.py) talks to a back end through its interface
    only: no torch and nothing of impasto.engine, at load or inside a function."""
    found = all_imports(modules()["impasto.server.loop"], "impasto.server.loop")
    bad = sorted(m for m in found if m.split(".")[0] == "torch"
                 or m == "impasto.engine" or m.startswith("impasto.engine."))
    assert not bad, f"loop.py imports {bad}"


def test_back_ends_share_one_job_ender() -> None:
    """The cluster back end borrows nothing from `serve` or the embedded worker: both
    back ends end their jobs (terminal event, shutdown wording, counting) through
    execute.JobEnder, so the two cannot drift apart."""
    mods = modules()
    cluster = all_imports(mods["impasto.server.cluster"], "impasto.server.cluster")
    worker = all_imports(mods["impasto.server.worker"], "impasto.server.worker")
    assert not {m for m in cluster if m.startswith(("impasto.server.serve",
                                                     "impasto.server.worker"))}, cluster
    for found in (cluster, worker):
        assert "impasto.server.execute.JobEnder" in found


def test_importing_the_socket_loop_loads_no_torch() -> None:
    """Not only loop.py's own lines: nothing it imports, transitively, loads torch or the
    engine (it once did through backend.py, which holds the embedded worker)."""
    code = ("import sys, impasto.server.loop; "
            "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('impasto.engine')))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]", r.stdout
