"""README.md's quick-start and "Use it with..." snippets, run as written.

The snippets are read from README.md itself (the block after each
`<!-- test_readme: NAME -->` marker), so the README cannot drift from what
works.  Only ports (and compare's --runs, to keep the test cheap) are
substituted."""
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

import ringloop

pytestmark = pytest.mark.ringloop_only

_RINGLOOP_DIR = os.path.dirname(os.path.dirname(os.path.abspath(ringloop.__file__)))
README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")
TIMEOUT = 120


def snippets():
    with open(README, encoding="utf-8") as f:
        text = f.read()
    found = {}
    for m in re.finditer(r"<!-- test_readme: ([\w-]+) -->\n```\w*\n(.*?)```", text, re.S):
        assert m.group(1) not in found, m.group(1)
        found[m.group(1)] = m.group(2)
    return found


SNIPPETS = snippets()


def test_readme_has_every_snippet():
    assert set(SNIPPETS) == {
        "quick-start", "python-m-ringloop", "uvicorn", "aiohttp", "pytest-ini", "pytest-test", "anyio",
    }


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (_RINGLOOP_DIR, env.get("PYTHONPATH")) if p)
    env.pop("PYTHONASYNCIODEBUG", None)
    return env


def run(args, cwd, **kw):
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=_env(), capture_output=True, text=True,
        timeout=TIMEOUT, **kw,
    )


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_quick_start(tmp_path):
    proc = run(["-c", SNIPPETS["quick-start"] + "\nprint('ok')\n"], tmp_path)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "ok\n", "")


def test_python_m_ringloop(tmp_path):
    (tmp_path / "app.py").write_text(
        "import asyncio, sys\n"
        "async def main():\n"
        "    return type(asyncio.get_running_loop()).__module__\n"
        "print(asyncio.run(main()), sys.argv[1:])\n"
    )
    (tmp_path / "mypackage").mkdir()
    (tmp_path / "mypackage" / "__init__.py").write_text("")
    (tmp_path / "mypackage" / "__main__.py").write_text(
        "import asyncio\n"
        "async def main():\n"
        "    return asyncio.get_running_loop().backend\n"
        "print(asyncio.run(main()))\n"
    )
    outputs = []
    for line in SNIPPETS["python-m-ringloop"].splitlines():
        args = shlex.split(line, comments=True)
        assert args[:3] == ["python", "-m", "ringloop"], line
        if "--runs" in args:
            args[args.index("--runs") + 1] = "1"
        proc = run(args[1:], tmp_path)
        assert proc.returncode == 0, (line, proc.stderr)
        outputs.append(proc.stdout)
    assert outputs[0] == "ringloop._loop ['--port', '8000']\n"
    assert outputs[1] == "epoll\n"
    assert outputs[2] == ""
    assert "ringloop " in outputs[3] and "asyncio " in outputs[3]
    assert outputs[4].startswith(f"ringloop {ringloop.__version__} ")


def _serve_and_get(cmd, cwd, port):
    """Start a server, GET / until it answers, stop it with Ctrl-C; returns
    (body, exit status, stderr)."""
    proc = subprocess.Popen(
        [sys.executable, *cmd], cwd=cwd, env=_env(),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    body = None
    try:
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as resp:
                    body = resp.read().decode()
                break
            except OSError:
                time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return body, proc.returncode, err


def test_uvicorn(tmp_path):
    pytest.importorskip("uvicorn")
    port = free_port()
    code = SNIPPETS["uvicorn"].replace("port=8000", f"port={port}")
    assert code != SNIPPETS["uvicorn"]
    (tmp_path / "app.py").write_text(code)
    body, rc, err = _serve_and_get(["app.py"], tmp_path, port)
    assert (body, rc) == ("served by ringloop._loop", 0), err
    # the command line in its first comment line
    cli = re.search(r"run with: (uvicorn .*)$", code.splitlines()[0]).group(1)
    port = free_port()
    body, rc, err = _serve_and_get(["-m", *shlex.split(cli), "--port", str(port)], tmp_path, port)
    assert (body, rc) == ("served by ringloop._loop", 0), err


def test_aiohttp_run_app(tmp_path):
    pytest.importorskip("aiohttp")
    port = free_port()
    code = SNIPPETS["aiohttp"].replace("port=8080", f"port={port}")
    assert code != SNIPPETS["aiohttp"]
    (tmp_path / "server.py").write_text(code)
    body, rc, err = _serve_and_get(["server.py"], tmp_path, port)
    assert (body, rc) == ("served by ringloop._loop", 0), err


def test_pytest_plugin_snippets(tmp_path):
    (tmp_path / "pytest.ini").write_text(SNIPPETS["pytest-ini"])
    (tmp_path / "test_example.py").write_text(SNIPPETS["pytest-test"])
    plugin = [] if _plugin_installed() else ["-p", "ringloop._pytest_plugin"]
    proc = run(["-m", "pytest", "-p", "no:cacheprovider", *plugin], tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert " 1 passed" in proc.stdout.strip().splitlines()[-1]


def _plugin_installed():
    from importlib.metadata import entry_points

    return any(ep.value == "ringloop._pytest_plugin" for ep in entry_points(group="pytest11"))


def test_anyio(tmp_path):
    pytest.importorskip("anyio")
    proc = run(["-c", SNIPPETS["anyio"]], tmp_path)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "ringloop._loop\n", "")
