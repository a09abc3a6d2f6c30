"""pytest plugin: run an existing asyncio test suite on ringloop, unedited.

Registered through the `pytest11` entry point, and inactive unless asked for:
`pytest --ringloop` (optionally `--ringloop-backend=epoll`), or in the ini
file `ringloop = true` (and `ringloop_backend = ...`).

When active it sets ringloop.EventLoopPolicy as asyncio's policy for the
session, so every loop asyncio makes is a ringloop loop: pytest-asyncio's
(it takes the current policy unless a suite overrides its event_loop_policy
fixture), anyio's asyncio backend, unittest.IsolatedAsyncioTestCase, and
asyncio.run() in a test.  The old policy comes back at the session's end.

PYTEST_DONT_REWRITE: the package ships a pytest11 plugin, so pytest marks it
for assertion rewriting, and warns (an error under -W error) when it was
imported before pytest started, e.g. from sitecustomize; it has no test
assertions to rewrite."""
import asyncio

_BACKENDS = ("auto", "io_uring", "epoll")
_saved = []


def pytest_addoption(parser):
    group = parser.getgroup("ringloop")
    group.addoption(
        "--ringloop",
        action="store_true",
        default=None,
        help="run the tests' asyncio event loops on ringloop",
    )
    group.addoption(
        "--ringloop-backend",
        choices=_BACKENDS,
        default=None,
        help="ringloop's reactor for --ringloop (default: auto, or RINGLOOP_BACKEND)",
    )
    parser.addini("ringloop", "run the tests' asyncio event loops on ringloop", type="bool", default=False)
    parser.addini("ringloop_backend", "ringloop's reactor when the plugin is active", default="")


def _active(config):
    opt = config.getoption("ringloop")
    return bool(opt) if opt is not None else bool(config.getini("ringloop"))


def _backend(config):
    import pytest

    backend = config.getoption("ringloop_backend") or config.getini("ringloop_backend").strip() or None
    if backend is not None and backend not in _BACKENDS:
        raise pytest.UsageError(f"ringloop_backend must be one of {', '.join(_BACKENDS)}, not {backend!r}")
    return backend


def pytest_configure(config):
    if not _active(config):
        return
    import ringloop

    _saved.append(asyncio.get_event_loop_policy())
    asyncio.set_event_loop_policy(ringloop.EventLoopPolicy(backend=_backend(config)))
    config._ringloop_active = True


def pytest_unconfigure(config):
    if getattr(config, "_ringloop_active", False) and _saved:
        asyncio.set_event_loop_policy(_saved.pop())
        config._ringloop_active = False


def pytest_report_header(config):
    if not getattr(config, "_ringloop_active", False):
        return None
    import ringloop

    info = ringloop.info()
    backend = _backend(config) or info["env_backend"] or "auto"
    return f"ringloop {info['version']}: asyncio's event loops are ringloop's (backend: {backend})"
