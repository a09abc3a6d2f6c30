"""python -m ringloop: a program runs as under plain python, on ringloop.

Each case runs the same program twice in child interpreters, `python ARGS`
and `python -m ringloop ARGS`, and compares what comes out (stdout, stderr
with its tracebacks, exit status); the program reports the loops it got on
a line of its own, checked separately."""
import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest

import ringloop

pytestmark = pytest.mark.ringloop_only

_RINGLOOP_DIR = os.path.dirname(os.path.dirname(os.path.abspath(ringloop.__file__)))
TIMEOUT = 120


def _env(**extra):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (_RINGLOOP_DIR, env.get("PYTHONPATH")) if p)
    env.pop("PYTHONASYNCIODEBUG", None)
    env.update(extra)
    return env


def run(args, cwd, stdin=None, env=None):
    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        input=stdin,
        capture_output=True,
        text=True,
        env=env or _env(),
        timeout=TIMEOUT,
    )


def run_both(args, cwd, stdin=None):
    plain = run(args, cwd, stdin)
    rl = run(["-m", "ringloop", *args], cwd, stdin)
    return plain, rl


def assert_same(plain, rl):
    assert (rl.returncode, rl.stdout, rl.stderr) == (plain.returncode, plain.stdout, plain.stderr)


def write(tmp_path, name, text):
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


# Prints which loops the program got (one line, "LOOPS ..."), then the rest.
LOOP_PROBE = """\
import asyncio, sys, threading

def kind(loop):
    return "ringloop" if type(loop).__module__.startswith("ringloop") else "other"

async def running():
    return kind(asyncio.get_running_loop())

def probe():
    kinds = [asyncio.run(running())]
    with asyncio.Runner() as runner:
        kinds.append(runner.run(running()))
    loop = asyncio.new_event_loop()
    kinds.append(kind(loop))
    loop.close()
    box = []
    def in_thread():
        box.append(asyncio.run(running()))
        loop = asyncio.new_event_loop()
        box.append(kind(loop))
        loop.close()
    t = threading.Thread(target=in_thread)
    t.start()
    t.join()
    kinds += box
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        asyncio.set_event_loop(None)
        asyncio.get_event_loop_policy()._local._set_called = False
        loop = asyncio.get_event_loop()   # main thread, no loop set: the policy makes one
    kinds.append(kind(loop))
    loop.close()
    asyncio.set_event_loop(None)
    return kinds
"""


def split_loops(proc):
    lines = proc.stdout.splitlines(keepends=True)
    loops = [line for line in lines if line.startswith("LOOPS ")]
    rest = "".join(line for line in lines if not line.startswith("LOOPS "))
    return loops, rest


def test_script_argv_main_guard_and_loops(tmp_path):
    write(tmp_path, "prog.py", LOOP_PROBE + textwrap.dedent("""
        import os, pickle
        class Point:
            pass
        if __name__ == "__main__":
            print("LOOPS", probe())
            print(sys.argv, __name__, __file__, __spec__, __package__)
            print(sys.path[0] == os.path.dirname(os.path.realpath(sys.argv[0])))
            print(sys.modules["__main__"].__file__ == __file__, type(pickle.loads(pickle.dumps(Point()))))
            sys.exit(7)
    """))
    plain, rl = run_both(["prog.py", "a", "--b", "-c"], tmp_path)
    assert plain.returncode == 7, plain.stderr
    assert split_loops(plain)[0] == ["LOOPS " + str(["other"] * 6) + "\n"]
    assert split_loops(rl)[0] == ["LOOPS " + str(["ringloop"] * 6) + "\n"]
    assert split_loops(rl)[1] == split_loops(plain)[1]
    assert "['prog.py', 'a', '--b', '-c'] __main__" in plain.stdout
    assert (rl.returncode, rl.stderr) == (plain.returncode, plain.stderr)


def test_backend_option_and_env(tmp_path):
    code = "import asyncio; l = asyncio.new_event_loop(); print(l.backend); l.close()"
    proc = run(["-m", "ringloop", "--backend", "epoll", "-c", code], tmp_path)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "epoll\n", "")
    # --backend also reaches the program's own ringloop calls and its children
    code = "import os, ringloop; l = ringloop.new_event_loop(); print(l.backend, os.environ['RINGLOOP_BACKEND']); l.close()"
    proc = run(["-m", "ringloop", "--backend=epoll", "-c", code], tmp_path)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "epoll epoll\n", "")


@pytest.mark.parametrize(
    "body",
    [
        "import sys\nsys.exit(3)\n",
        "raise SystemExit('a message')\n",
        "import os\nprint('x', flush=True)\nos._exit(5)\n",
        "def f():\n    raise ValueError('boom')\nf()\n",
        "import asyncio\nasync def main():\n    raise KeyError('in a task')\nasyncio.run(main())\n",
        "raise KeyboardInterrupt\n",
        "x = (\n",
    ],
    ids=["exit3", "exit-msg", "os-exit", "raise", "raise-in-asyncio-run", "keyboardinterrupt", "syntax"],
)
def test_exit_status_and_traceback_as_python(tmp_path, body):
    write(tmp_path, "prog.py", body)
    plain, rl = run_both(["prog.py"], tmp_path)
    if "asyncio" in body:
        # the traceback's middle differs (asyncio's frames vs ringloop's);
        # its program frames, its last line and the status must not
        assert rl.returncode == plain.returncode == 1
        assert rl.stderr.splitlines()[-1] == plain.stderr.splitlines()[-1] == "KeyError: 'in a task'"
        assert rl.stderr.splitlines()[:3] == plain.stderr.splitlines()[:3]
        return
    assert_same(plain, rl)
    if "KeyboardInterrupt" in body:
        assert rl.returncode == -signal.SIGINT


def test_stdin_read_by_the_program(tmp_path):
    write(tmp_path, "prog.py", """
        import asyncio, sys
        async def main():
            loop = asyncio.get_running_loop()
            data = await loop.run_in_executor(None, sys.stdin.read)
            print(type(loop).__name__ == "Loop", data.upper(), end="")
        asyncio.run(main())
    """)
    plain, rl = run_both(["prog.py"], tmp_path, stdin="one\ntwo\n")
    assert plain.stdout == "False ONE\nTWO\n"
    assert rl.stdout == "True ONE\nTWO\n"
    assert rl.returncode == plain.returncode == 0


def test_script_from_stdin(tmp_path):
    plain, rl = run_both(["-", "x"], tmp_path, stdin="import sys\nprint(sys.argv, __name__)\n1/0\n")
    assert plain.stdout == "['-', 'x'] __main__\n"
    assert_same(plain, rl)


def test_module_and_package(tmp_path):
    write(tmp_path, "pkg/__init__.py", "")
    write(tmp_path, "pkg/__main__.py", LOOP_PROBE + textwrap.dedent("""
        print("LOOPS", probe())
        print(sys.argv[1:], __name__, __spec__.name, sys.path[0] == __import__("os").getcwd())
        def f():
            1 / 0
        f()
    """))
    write(tmp_path, "mod.py", "import sys\nprint(sys.argv[1:], __name__)\nraise SystemExit(4)\n")
    plain, rl = run_both(["-m", "pkg", "q", "-m"], tmp_path)
    assert split_loops(rl)[0] == ["LOOPS " + str(["ringloop"] * 6) + "\n"]
    assert split_loops(rl)[1] == split_loops(plain)[1] == "['q', '-m'] __main__ pkg.__main__ True\n"
    assert (rl.returncode, rl.stderr) == (plain.returncode, plain.stderr)
    assert "ZeroDivisionError" in rl.stderr
    assert_same(*run_both(["-m", "mod", "z"], tmp_path))
    assert_same(*run_both(["-m", "no_such_module_here"], tmp_path))


def test_command(tmp_path):
    code = "import sys, asyncio\nprint(sys.argv, __name__, repr(sys.path[0]))\nasyncio.run(asyncio.sleep(0))\n1/0"
    plain, rl = run_both(["-c", code, "a", "b"], tmp_path)
    assert plain.stdout == "['-c', 'a', 'b'] __main__ ''\n"
    assert_same(plain, rl)


def test_directory_with_main(tmp_path):
    write(tmp_path, "app/__main__.py", "import sys\nprint(sys.argv, __name__)\nraise SystemExit(6)\n")
    assert_same(*run_both(["app", "x"], tmp_path))


def test_missing_script(tmp_path):
    plain, rl = run_both(["missing.py"], tmp_path)
    assert rl.returncode == plain.returncode == 2
    # the interpreter names itself by its argv[0]; the rest is the same
    assert rl.stderr.split(":", 1)[1] == plain.stderr.split(":", 1)[1]
    assert "can't open file" in rl.stderr


def test_sigint_while_running(tmp_path):
    """Ctrl-C in asyncio.run(): the task is cancelled, KeyboardInterrupt
    leaves the interpreter by SIGINT, as with stock asyncio."""
    write(tmp_path, "prog.py", """
        import asyncio, sys
        async def main():
            try:
                print("ready", flush=True)
                await asyncio.sleep(3600)
            finally:
                print("cleanup ran", flush=True)
        asyncio.run(main())
    """)
    results = []
    for args in (["prog.py"], ["-m", "ringloop", "prog.py"]):
        proc = subprocess.Popen(
            [sys.executable, *args], cwd=tmp_path, env=_env(),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        try:
            assert proc.stdout.readline() == "ready\n"
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=TIMEOUT)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        results.append((proc.returncode, out, err.splitlines()[-1]))
    assert results[0] == (-signal.SIGINT, "cleanup ran\n", "KeyboardInterrupt")
    assert results[1] == results[0]


def test_program_excepthook_is_used(tmp_path):
    write(tmp_path, "prog.py", """
        import sys
        def hook(t, v, tb):
            print("hook:", t.__name__, v, tb.tb_frame.f_code.co_name)
        sys.excepthook = hook
        def f():
            raise OSError("x")
        f()
    """)
    assert_same(*run_both(["prog.py"], tmp_path))


def test_version_and_info(tmp_path):
    proc = run(["-m", "ringloop", "--version"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    info = ringloop.info()
    assert proc.stdout.startswith(f"ringloop {ringloop.__version__} (Python ")
    assert f"kernel: {info['kernel']}\n" in proc.stdout
    assert f"backend 'auto' picks here: {info['auto_backend']}\n" in proc.stdout
    reason = ringloop.io_uring_unavailable_reason()
    assert info["auto_backend"] == ("io_uring" if reason is None else "epoll")
    assert info["io_uring_unavailable_reason"] == reason
    assert ("io_uring unavailable:" in proc.stdout) == (reason is not None)
    assert info["liburing"] is None or info["liburing"][0].isdigit()
    # no io_uring at all (a seccomp filter would do the same): auto says why
    if reason is None:
        proc = run(["-c", "import json, ringloop; print(json.dumps(ringloop.info()))"], tmp_path)
        assert json.loads(proc.stdout)["auto_backend"] == "io_uring"


@pytest.mark.parametrize(
    "args, msg",
    [
        ([], "nothing to run"),
        (["--backend", "kqueue", "x.py"], "--backend must be one of"),
        (["--bogus", "x.py"], "unknown option '--bogus'"),
        (["-m"], "argument expected for the -m option"),
    ],
)
def test_usage_errors(tmp_path, args, msg):
    proc = run(["-m", "ringloop", *args], tmp_path)
    assert proc.returncode == 2
    assert msg in proc.stderr
    assert proc.stderr.startswith("usage: python -m ringloop")


# -- compare ------------------------------------------------------------------


def test_compare_runs_each_loop_interleaved(tmp_path):
    write(tmp_path, "work.py", """
        import asyncio, os, sys
        async def main(n):
            for _ in range(n):
                await asyncio.sleep(0)
            return type(asyncio.get_running_loop()).__module__
        mod = asyncio.run(main(int(sys.argv[1])))
        with open(sys.argv[2], "a") as f:
            f.write(f"{mod} {os.environ.get('RINGLOOP_BACKEND', '-')}\\n")
    """)
    log = tmp_path / "log"
    proc = run(
        ["-m", "ringloop", "compare", "--loops", "asyncio,ringloop,ringloop-epoll", "--runs", "2",
         "work.py", "100", str(log)],
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    # each loop ran in its own process, in rotating order
    assert log.read_text().splitlines() == [
        "asyncio.unix_events -", "ringloop._loop -", "ringloop._loop epoll",
        "ringloop._loop -", "ringloop._loop epoll", "asyncio.unix_events -",
    ]
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("work.py 100 ")
    assert "2 run(s) per loop" in lines[0]
    header = lines[2].split()
    assert header == ["loop", "wall", "s", "spread", "wall/asyncio", "cpu", "s", "spread", "cpu/asyncio"]
    rows = {line.split()[0]: line.split()[1:] for line in lines[3:]}
    assert list(rows) == ["asyncio", "ringloop", "ringloop-epoll"]
    for name, (wall, wspread, wratio, cpu, cspread, cratio) in rows.items():
        assert float(wall) > 0 and float(cpu) > 0
        assert wspread.endswith("%") and cspread.endswith("%")
        assert float(wratio) > 0 and float(cratio) > 0
    assert rows["asyncio"][2] == rows["asyncio"][5] == "1.00"


def test_compare_json_and_uvloop(tmp_path):
    write(tmp_path, "work.py", "import asyncio\nasyncio.run(asyncio.sleep(0))\n")
    proc = run(["-m", "ringloop", "compare", "--json", "--runs", "1", "work.py"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    try:
        import uvloop  # noqa: F401
        expected = ["asyncio", "uvloop", "ringloop", "ringloop-epoll"]
    except ImportError:
        expected = ["asyncio", "ringloop", "ringloop-epoll"]
        assert "uvloop is not installed" in proc.stderr
    assert list(data["results"]) == expected
    for res in data["results"].values():
        assert len(res["runs"]["wall"]) == 1
        assert res["wall"]["median"] == res["runs"]["wall"][0]
        assert res["cpu"]["spread"] == 0.0
    assert data["results"]["asyncio"]["wall"]["vs_asyncio"] == 1.0


def test_compare_failing_program(tmp_path):
    write(tmp_path, "bad.py", "import sys\nsys.stderr.write('it broke\\n')\nsys.exit(3)\n")
    proc = run(["-m", "ringloop", "compare", "--loops", "ringloop", "--runs", "2", "bad.py"], tmp_path)
    assert proc.returncode == 1
    assert "it broke" in proc.stderr
    assert "exited with status 3 on ringloop" in proc.stderr
    assert "wall" not in proc.stdout
