"""ringloop's public functions: run(), new_event_loop(), install(),
EventLoopPolicy, Loop's backend argument and attribute, info()."""
import asyncio
import gc
import os
import platform
import warnings

import pytest

import ringloop

pytestmark = pytest.mark.ringloop_only

BACKENDS = ["epoll"] + (["io_uring"] if ringloop.io_uring_unavailable_reason() is None else [])


async def _backend_of_running_loop():
    return asyncio.get_running_loop().backend


@pytest.mark.parametrize("backend", BACKENDS)
def test_run_backend(backend, monkeypatch):
    # the argument wins over the environment
    monkeypatch.setenv("RINGLOOP_BACKEND", "io_uring" if backend == "epoll" else "epoll")
    assert ringloop.run(_backend_of_running_loop(), backend=backend) == backend


def test_run_backend_none_and_auto_follow_env(monkeypatch):
    monkeypatch.setenv("RINGLOOP_BACKEND", "epoll")
    assert ringloop.run(_backend_of_running_loop()) == "epoll"
    assert ringloop.run(_backend_of_running_loop(), backend=None) == "epoll"
    assert ringloop.run(_backend_of_running_loop(), backend="auto") == "epoll"


def test_run_native_tasks():
    async def task_type():
        return type(asyncio.current_task())

    assert ringloop.run(task_type(), native_tasks=False) is asyncio.Task
    assert ringloop.run(task_type(), native_tasks=True) is ringloop.Task


def test_run_bad_backend_fails_before_a_loop_exists():
    coro = _backend_of_running_loop()
    with pytest.raises(ValueError, match=r"backend must be one of 'auto', 'io_uring', 'epoll' or None, not 'nope'"):
        ringloop.run(coro, backend="nope")
    coro.close()


def test_run_inside_a_running_loop(recwarn):
    """asyncio.run()'s message, and no shutdown error or stray 'never
    awaited' warning from a Runner half-built inside the running loop."""

    async def inner():
        pass

    async def outer():
        coro = inner()
        try:
            ringloop.run(coro)
        finally:
            coro.close()

    with pytest.raises(RuntimeError) as info:
        ringloop.run(outer())
    assert str(info.value) == "ringloop.run() cannot be called from a running event loop"
    assert info.value.__context__ is None
    gc.collect()
    assert [str(w.message) for w in recwarn if issubclass(w.category, RuntimeWarning)] == []


def test_new_event_loop_backend_none(monkeypatch):
    monkeypatch.delenv("RINGLOOP_BACKEND", raising=False)
    for loop in (ringloop.new_event_loop(backend=None), ringloop.Loop(backend=None)):
        try:
            assert loop.backend == ringloop.info()["auto_backend"]
        finally:
            loop.close()
    monkeypatch.setenv("RINGLOOP_BACKEND", "epoll")
    loop = ringloop.new_event_loop(backend=None)
    try:
        assert loop.backend == "epoll"
    finally:
        loop.close()


def test_new_event_loop_bad_backend():
    with pytest.raises(ValueError, match=r"backend must be one of .* not 'nope'"):
        ringloop.new_event_loop(backend="nope")


@pytest.mark.parametrize("backend", BACKENDS)
def test_backend_after_close(backend):
    loop = ringloop.new_event_loop(backend=backend)
    assert loop.backend == backend
    loop.close()
    assert loop.backend == backend
    assert f"backend={backend}>" in repr(loop)


@pytest.mark.parametrize("backend", BACKENDS)
def test_policy_backend(backend, monkeypatch):
    monkeypatch.delenv("RINGLOOP_BACKEND", raising=False)
    policy = ringloop.EventLoopPolicy(backend=backend)
    loop = policy.new_event_loop()
    try:
        assert type(loop) is ringloop.Loop
        assert loop.backend == backend
    finally:
        loop.close()


def test_policy_bad_backend_fails_at_once():
    with pytest.raises(ValueError, match="not 'nope'"):
        ringloop.EventLoopPolicy(backend="nope")


def test_policy_default_follows_env(monkeypatch):
    policy = ringloop.EventLoopPolicy()
    monkeypatch.setenv("RINGLOOP_BACKEND", "epoll")
    loop = policy.new_event_loop()
    try:
        assert loop.backend == "epoll"
    finally:
        loop.close()


def test_install_backend():
    old = asyncio.get_event_loop_policy()
    try:
        ringloop.install(backend="epoll", native_tasks=False)
        assert type(asyncio.get_event_loop_policy()) is ringloop.EventLoopPolicy

        async def main():
            return asyncio.get_running_loop().backend, type(asyncio.current_task())

        assert asyncio.run(main()) == ("epoll", asyncio.Task)
    finally:
        asyncio.set_event_loop_policy(old)


def test_info():
    info = ringloop.info()
    assert set(info) == {
        "version", "python", "kernel", "liburing", "auto_backend",
        "io_uring_unavailable_reason", "env_backend",
    }
    assert info["version"] == ringloop.__version__
    assert platform.release() in info["kernel"]
    reason = ringloop.io_uring_unavailable_reason()
    assert info["io_uring_unavailable_reason"] == reason
    loop = ringloop.Loop(backend="auto")   # "auto" itself, whatever the environment says
    try:
        assert info["auto_backend"] == loop.backend
    finally:
        loop.close()
    assert info["env_backend"] == (os.environ.get("RINGLOOP_BACKEND") or None)
    # the version of the liburing the module was built with (setup.py asks
    # pkg-config; None when it could not tell)
    lib = info["liburing"]
    assert lib is None or all(part.isdigit() for part in lib.split(".")), lib
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ringloop.info()
