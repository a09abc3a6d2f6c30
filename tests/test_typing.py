"""ringloop's type stubs: `mypy --strict` on a small user script accepts the
right uses and rejects the wrong ones (new_event_loop(backend="nope") among
them), and the stubs name what the package really has.

The stubs are taken from the ringloop pytest imported (CI's installed copy:
this also checks that they ship)."""
import ast
import inspect
import os
import shutil
import subprocess
import sys

import pytest

import ringloop

pytestmark = pytest.mark.ringloop_only

PKG = os.path.dirname(os.path.abspath(ringloop.__file__))
STUBS = ("__init__.pyi", "_core.pyi", "_loop.pyi", "_policy.pyi")

GOOD = '''\
import asyncio

import ringloop


async def main(n: int) -> int:
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[int] = loop.create_future()
    loop.call_soon(fut.set_result, n)
    return await fut


x: int = ringloop.run(main(1), backend="epoll", debug=False)
y: int = ringloop.run(main(1), backend=None, native_tasks=False)
loop: ringloop.Loop = ringloop.new_event_loop(backend="io_uring")
name: str = loop.backend
r: int = loop.run_until_complete(main(3))
task: asyncio.Task[int] = loop.create_task(main(4))
h: asyncio.TimerHandle = loop.call_later(1.0, print, "x")
loop.close()
ringloop.Loop(backend=None).close()
ringloop.install(backend="auto")
asyncio.set_event_loop_policy(ringloop.EventLoopPolicy(backend="epoll"))
with asyncio.Runner(loop_factory=ringloop.new_event_loop) as runner:
    z: int = runner.run(main(2))
info = ringloop.info()
reason: str | None = info["io_uring_unavailable_reason"]
why: str | None = ringloop.io_uring_unavailable_reason()
version: str = ringloop.__version__
fut2: asyncio.Future[int] = ringloop.Future()
'''

BAD = {
    'ringloop.new_event_loop(backend="nope")': 'Argument "backend" to "new_event_loop"',
    'ringloop.run(main(1), backend="kqueue")': 'Argument "backend" to "run"',
    "s: str = ringloop.run(main(1))": "Incompatible types in assignment",
    'ringloop.EventLoopPolicy(backend="x")': 'Argument "backend" to "EventLoopPolicy"',
    'ringloop.new_event_loop().backend = "epoll"': 'Property "backend" defined in "Loop" is read-only',
    "ringloop.run(123)": 'Argument 1 to "run"',
    'ringloop.Loop(backend="uring")': 'Argument "backend" to "Loop"',
    'ringloop.install(native_tasks="yes")': 'Argument "native_tasks" to "install"',
    'ringloop.info()["nope"]': 'has no key "nope"',
    "ringloop.no_such_function()": 'Module has no attribute "no_such_function"',
}


def _mypy(tmp_path, files):
    pytest.importorskip("mypy")
    stubs = tmp_path / "stubs" / "ringloop"
    stubs.mkdir(parents=True)
    for name in STUBS + ("py.typed",):
        shutil.copy(os.path.join(PKG, name), stubs / name)
    env = dict(os.environ)
    env["MYPYPATH"] = str(tmp_path / "stubs")
    env.pop("PYTHONPATH", None)  # mypy must see the stubs, not the sources
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-error-summary", "--show-error-codes",
         "--cache-dir", str(tmp_path / "cache"), *files],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )


def test_good_script_passes_strict(tmp_path):
    (tmp_path / "good.py").write_text(GOOD)
    proc = _mypy(tmp_path, ["good.py"])
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")


def test_bad_uses_are_errors(tmp_path):
    lines = ["import ringloop", "", "", "async def main(n: int) -> int:", "    return n", "", ""]
    first = len(lines) + 1
    lines += list(BAD)
    (tmp_path / "bad.py").write_text("\n".join(lines) + "\n")
    proc = _mypy(tmp_path, ["bad.py"])
    assert proc.returncode == 1, proc.stdout + proc.stderr
    errors = {}
    for line in proc.stdout.splitlines():
        if ": error: " in line:
            errors.setdefault(int(line.split(":")[1]), []).append(line)
    for i, (code, expected) in enumerate(BAD.items()):
        got = errors.get(first + i, [])
        assert any(expected in e for e in got), (code, got)
    assert set(errors) == set(range(first, first + len(BAD)))


def _stub_tree(name):
    with open(os.path.join(PKG, name)) as f:
        return ast.parse(f.read())


def test_stubs_match_the_package():
    tree = _stub_tree("__init__.pyi")
    declared = set()
    funcs = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            declared.add(node.name)
            funcs[node.name] = node
        elif isinstance(node, ast.ImportFrom):
            declared.update(a.asname or a.name for a in node.names)
        elif isinstance(node, (ast.AnnAssign, ast.Assign)):
            targets = [node.target] if isinstance(node, ast.AnnAssign) else node.targets
            declared.update(t.id for t in targets if isinstance(t, ast.Name))
    assert set(ringloop.__all__) <= declared
    for name, node in funcs.items():
        runtime = inspect.signature(getattr(ringloop, name))
        stub = [a.arg for a in node.args.args + node.args.kwonlyargs]
        assert stub == list(runtime.parameters), name
        kinds = [p.kind for p in runtime.parameters.values()]
        assert kinds.count(inspect.Parameter.KEYWORD_ONLY) == len(node.args.kwonlyargs), name
    core = {n.name for n in _stub_tree("_core.pyi").body if isinstance(n, (ast.ClassDef, ast.FunctionDef))}
    for name in core:
        assert hasattr(ringloop._core, name), name
    assert ringloop.info().keys() == {
        n.target.id for n in next(
            c for c in tree.body if isinstance(c, ast.ClassDef) and c.name == "_Info"
        ).body if isinstance(n, ast.AnnAssign)
    }
