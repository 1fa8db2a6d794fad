"""The dependency direction of the packages, as the design says."""

from __future__ import annotations

import ast
import os
import subprocess
import sys

from evix_helpers import REPO

PACKAGES = ["nixffi", "evix_worker", "protocol", "evixd", "evix_client"]


def _imports(package: str) -> set[str]:
    found = set()
    for path in (REPO / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module.split(".")[0])
    return found


def test_only_nixffi_touches_cffi():
    for package in PACKAGES:
        if package != "nixffi":
            assert "cffi" not in _imports(package), package


def test_protocol_imports_neither_trio_nor_cffi_nor_nix():
    assert not {"trio", "cffi", "nixffi", "evixd", "evix_worker"} & _imports("protocol")


def test_only_the_worker_imports_nixffi():
    for package in ("protocol", "evixd", "evix_client"):
        assert "nixffi" not in _imports(package), package


def _modules_after(statement: str) -> set[str]:
    code = f"{statement}\nimport sys; print(' '.join(sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env=dict(os.environ, PYTHONPATH=str(REPO)))
    return set(out.stdout.split())


def test_the_engine_never_loads_nix_in_process():
    loaded = _modules_after("import evixd, evixd.engine, evixd.daemon")
    assert not {"nixffi", "cffi", "_cffi_backend"} & loaded


def test_the_cli_module_is_light():
    loaded = _modules_after("import evix_client.main")
    assert not {"trio", "cffi", "capnp", "nixffi", "evixd"} & loaded


def _yields_inside_a_with(function: ast.AsyncFunctionDef) -> list[int]:
    """Lines where `function` yields from inside a `with`/`async with` block of its own."""
    found = []
    for block in ast.walk(function):
        if isinstance(block, (ast.With, ast.AsyncWith)):
            found += [n.lineno for n in ast.walk(block) if isinstance(n, (ast.Yield, ast.YieldFrom))]
    return found


def test_no_async_generator_yields_from_inside_a_nursery_or_cancel_scope():
    """trio's rule (PEP 789): the consumer's code would run inside the generator's scope, and
    a background task's error would reach it wrapped in an ExceptionGroup. Only a context
    manager may yield there: its caller's `async with` is what enters and leaves the scope."""
    offenders = []
    for package in PACKAGES:
        for path in (REPO / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if not isinstance(node, ast.AsyncFunctionDef):
                    continue
                if any("asynccontextmanager" in ast.unparse(d) for d in node.decorator_list):
                    continue
                offenders += [f"{path.relative_to(REPO)}:{line}" for line in _yields_inside_a_with(node)]
    assert offenders == []


def test_a_local_eval_master_loads_no_daemon_worker_or_nix_module(tmp_path):
    """A real `evix eval --no-daemon` run, its master's modules listed at exit."""
    f = tmp_path / "one.nix"
    f.write_text('{ a = derivation { name = "a"; system = "x86_64-linux"; builder = "/bin/sh"; }; }')
    code = ("import atexit, sys\n"
            "atexit.register(lambda: sys.stderr.write('MODULES ' + ' '.join(sys.modules) + '\\n'))\n"
            "from evix_client.main import entry\n"
            f"sys.argv = ['evix', 'eval', '--no-daemon', '--file', {str(f)!r}, '--workers', '2']\n"
            "entry()\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert out.returncode == 0, out.stderr
    assert '"drvPath"' in out.stdout  # it did evaluate
    loaded = set(next(line for line in out.stderr.splitlines() if line.startswith("MODULES ")).split()[1:])
    assert "evixd.engine.scheduler" in loaded
    assert not {m for m in loaded if m.split(".")[0] in ("evix_worker", "nixffi", "cffi", "_cffi_backend")}
    assert not {m for m in loaded if m.startswith("evixd.daemon")}


def test_the_remote_worker_service_relays_and_loads_no_nix_itself():
    """`evix worker --listen` starts evaluators as local workers; its own process, like a
    master, never loads Nix, and its module is reached from the CLI only on `evix worker`."""
    loaded = _modules_after("import evixd.remote_service.main, evixd.remote_service.relay")
    assert not {m for m in loaded if m.split(".")[0] in ("evix_worker", "nixffi", "cffi", "_cffi_backend")}
    assert not {m for m in loaded if m.startswith("evixd.daemon")}
