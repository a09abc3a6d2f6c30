"""CPython's own asyncio test suite (Lib/test/test_asyncio), run against ringloop.

The tests come from the running interpreter (`test.test_asyncio.*`), so each
Python version runs its own revision of them; nothing is copied here.  This
module builds unittest subclasses of CPython's classes in which the loop under
test is replaced; pytest collects only those subclasses.

Loop under test (conftest.py's switches):
  RINGLOOP_TEST_LOOP=ringloop (default)  ringloop.new_event_loop(), which
                                         honours RINGLOOP_BACKEND
  RINGLOOP_TEST_LOOP=asyncio             asyncio.SelectorEventLoop(), the
                                         loop asyncio.new_event_loop() gives
                                         on Linux; nothing may fail then,
                                         which shows the harness is sound

What runs, and how the loop gets in:
  - Classes with a loop hook get it overridden: test_events'
    UnixEventLoopTestsMixin(EventLoopTestsMixin) + SubprocessTestsMixin
    (`create_event_loop`, our test_events.EventLoopTests), test_sock_lowlevel's
    BaseSockTestsMixin and test_sendfile's SendfileTestsBase
    (`create_event_loop`), the functional.py-based test_buffered_proto /
    test_server / test_sslproto classes (`new_loop`), test_runners' RunTests
    and RunnerTests (`new_loop`, keeping the "shutdown_asyncgens ran" record
    its tearDown checks).  Mixins are combined on top of test_utils.TestCase
    as CPython's own EPollEventLoopTests etc. are; where CPython's concrete
    class adds tests of its own (test_server.SelectorStartServerTests, ...)
    we subclass it and override its hook instead.
  - Classes whose setUp() builds a mocked stock loop only to have a loop --
    test_base_events.BaseEventLoopTests and BaseEventLoopWithSelectorTests,
    test_pep492, test_unix_events.SelectorEventLoopUnixSocketTests -- get a
    setUp() that builds the loop under test; each of their tests that depends
    on the stock internals it mocks (loop._ready, _scheduled, _selector,
    _process_events, patched asyncio.base_events.socket, ...) is excluded.
  - Classes that take their loop from asyncio itself (asyncio.new_event_loop(),
    asyncio.run(), asyncio.Runner(), unittest.IsolatedAsyncioTestCase):
    test_locks, test_queues, test_timeouts, test_taskgroups, test_waitfor,
    test_threads, test_futures2, test_staggered, test_context,
    test_eager_task_factory, test_events' PolicyTests/Test{Py,C}GetEventLoop,
    test_base_events.RunningLoopTests, test_streams, test_ssl, test_sslproto's
    handshake tests, test_unix_events' TestFunctional/TestFork, test_subprocess'
    watcher classes, and test_tasks' classes that create real loops.  They run
    with ringloop.EventLoopPolicy installed for the duration of each test (what
    ringloop.install() does for an application), and `asyncio.
    DefaultEventLoopPolicy` names ringloop.EventLoopPolicy meanwhile, so tests
    that build "the default policy" get ours.  test_events.EventLoopTests keeps
    the stock policy, as in CPython, since its loop comes from its hook.
    test_tasks' BaseTaskTests (eight Task/Future variants) run like this too,
    but only their tests that call asyncio.new_event_loop() touch the loop
    under test; the ones using only self.loop (test_utils.TestLoop) are
    excluded by name.

Not run, each listed in cpython_exclusions.py and generated here as a
skipped test so that it is counted: test_futures and test_tasks' gather/
introspection classes (test_utils.TestLoop or mock loops), test_selector_events
and test_proactor_events (stock loop implementations with mocks), the
Handle/Timer/ABC/child-watcher/pipe-transport unit tests, and the single tests
that need a zero-copy sendfile in the native transport (not in ringloop
yet) or check stock internals.  The TLS tests (test_ssl, test_sslproto, the
ssl tests of test_events and test_streams), the subprocess, pipe and
sendfile tests all run.  Not generated: the stock-loop variants of
classes run here (e.g. test_events.PollEventLoopTests is EventLoopTests on
another selector; cpython_exclusions.STOCK_LOOP_VARIANTS) and the Windows-only
modules, which skip themselves at import.

Exclusions are applied as pytest marks: skip for a feature ringloop lacks yet
or a test of stock internals, xfail(strict=True) for a ringloop bug (the lead
removes the entry once it is fixed; an XPASS fails).  With
RINGLOOP_TEST_LOOP=asyncio only the entries about the test itself (stock
internals, no loop from a factory) apply: the subprocess/sendfile/pipe
tests then run on the stock loop, which checks their wiring here.

Harness details, each needed for CPython's tests to run outside regrtest:
  - each test starts with a fresh policy on which set_event_loop(None) has
    been called, the state every test_utils.TestCase leaves behind (3.12's
    GenericWatcherTests.test_create_subprocess_with_pidfd relies on it);
  - ringloop's module-level references to the "asyncio" logger follow
    `asyncio.base_events.logger` during a test, so tests that patch that name
    see what ringloop logs (it is the same logger object otherwise);
  - asyncio._get_running_loop & co., which GetEventLoopTestsMixin replaces in
    setUp() and restores in tearDown(), are restored after every test, and
    after a failed test the loops it left open are closed, so that a failure
    in setUp() neither leaks into later tests nor is reported again as an fd
    leak;
  - under RINGLOOP_TEST_LOOP=asyncio the loop given to the mocked-loop classes
    ignores `loop._write_to_self = Mock()` (scaffolding for CPython's fake
    loop, which ringloop's C core never sees either), or call_soon_threadsafe()
    could not wake it;
  - CPython tests create files named by test.support.os_helper.TESTFN in the
    working directory, so the module runs in a temporary directory.

RINGLOOP_BACKEND=io_uring where io_uring is unavailable skips every test with
the reason.  The conftest guards (per-test faulthandler timeout, fd-leak
check) are autouse fixtures and wrap unittest tests as well: pytest runs a
TestCase's run() inside the fixtures of its item.
"""
import asyncio
import contextlib
import gc
import importlib
import inspect
import logging
import os
import pkgutil
import sys
import tempfile
import unittest
from unittest import mock

import pytest

import ringloop

import cpython_exclusions as X

PY = sys.version_info[:2]
TEST_LOOP = os.environ.get("RINGLOOP_TEST_LOOP", "ringloop")
RINGLOOP = TEST_LOOP == "ringloop"
BACKEND = os.environ.get("RINGLOOP_BACKEND", "auto")

import test.test_asyncio as _pkg  # noqa: E402
from test.test_asyncio import utils as test_utils  # noqa: E402

if RINGLOOP and BACKEND == "io_uring":
    _why = ringloop.io_uring_unavailable_reason()
    if _why is not None:
        pytestmark = pytest.mark.skip(
            reason=f"RINGLOOP_BACKEND=io_uring but io_uring is unavailable here: {_why}"
        )


def new_loop():
    """A new loop of the kind under test (never through the policy: some
    CPython tests install policies that call back into their factory)."""
    if RINGLOOP:
        return ringloop.new_event_loop()
    return asyncio.SelectorEventLoop()


# ---------------------------------------------------------------------------
# Loop injection


class _LoggerProxy:
    """Stands for the "asyncio" logger inside ringloop during a test and
    forwards to whatever `asyncio.base_events.logger` is at call time."""

    def __getattr__(self, name):
        return getattr(asyncio.base_events.logger, name)


_LOGGER_PROXY = _LoggerProxy()
_ASYNCIO_LOGGER = logging.getLogger("asyncio")


def _ringloop_modules_logging_to_asyncio():
    return [
        module
        for name, module in list(sys.modules.items())
        if (name == "ringloop" or name.startswith("ringloop."))
        and getattr(module, "logger", None) is _ASYNCIO_LOGGER
    ]


@contextlib.contextmanager
def _loop_injection(install_policy):
    saved_policy = asyncio.events._event_loop_policy
    with contextlib.ExitStack() as stack:
        if RINGLOOP:
            for module in _ringloop_modules_logging_to_asyncio():
                stack.enter_context(mock.patch.object(module, "logger", _LOGGER_PROXY))
        if RINGLOOP and install_policy:
            stack.enter_context(
                mock.patch.object(asyncio, "DefaultEventLoopPolicy", ringloop.EventLoopPolicy)
            )
            asyncio.set_event_loop_policy(ringloop.EventLoopPolicy())
        else:
            asyncio.set_event_loop_policy(None)
        # Each test gets a fresh policy, in the state every test_utils.TestCase
        # leaves it in (set_event_loop(None) called): some CPython tests rely
        # on it, e.g. 3.12's GenericWatcherTests.test_create_subprocess_with_pidfd
        # expects get_event_loop() to raise RuntimeError, not warn.
        asyncio.get_event_loop_policy().set_event_loop(None)
        try:
            yield
        finally:
            asyncio.events._event_loop_policy = saved_policy


# Module attributes some CPython tests replace in setUp() and restore in
# tearDown(), which is skipped when setUp() fails.
_SAVED_ATTRS = [
    (mod, name)
    for mod in (asyncio, asyncio.events)
    for name in ("_get_running_loop", "_set_running_loop", "get_running_loop", "get_event_loop")
]


class _ResultSpy:
    """Passes everything to the real result; notes whether the test failed."""

    def __init__(self, result):
        self._rl_result = result
        self.rl_failed = False

    def __getattr__(self, name):
        return getattr(self._rl_result, name)

    def addError(self, *args, **kwargs):
        self.rl_failed = True
        return self._rl_result.addError(*args, **kwargs)

    def addFailure(self, *args, **kwargs):
        self.rl_failed = True
        return self._rl_result.addFailure(*args, **kwargs)

    def addSubTest(self, test, subtest, err):
        if err is not None:
            self.rl_failed = True
        return self._rl_result.addSubTest(test, subtest, err)


def _close_abandoned_loops():
    """After a failed test: close the loops it left open (its tearDown may
    not have run), so that the fd-leak guard reports the failure itself and
    not its consequence."""
    gc.collect()
    for obj in gc.get_objects():
        try:
            if (
                isinstance(obj, asyncio.AbstractEventLoop)
                and not obj.is_running()
                and not obj.is_closed()
            ):
                obj.close()
        except Exception:
            pass


class _Harness:
    """First base of every generated class."""

    _rl_install_policy = True

    def run(self, result=None):
        saved = [(mod, name, getattr(mod, name)) for mod, name in _SAVED_ATTRS]
        spy = _ResultSpy(result) if result is not None else None
        try:
            with _loop_injection(self._rl_install_policy):
                return super().run(spy)
        finally:
            for mod, name, value in saved:
                setattr(mod, name, value)
            if spy is not None and spy.rl_failed:
                _close_abandoned_loops()


def _create_event_loop(self):
    return new_loop()


class _SelectorEventLoopForMockingTests(asyncio.SelectorEventLoop):
    """The stock loop for _setup_with_loop() under RINGLOOP_TEST_LOOP=asyncio.

    Tests written for CPython's fake BaseEventLoop replace loop._write_to_self
    with a Mock, since that loop has no self-pipe; on a real loop that would
    stop call_soon_threadsafe() from waking it.  Such an assignment does not
    reach ringloop's C core either, so here it is ignored too."""

    @property
    def _write_to_self(self):
        return super()._write_to_self

    @_write_to_self.setter
    def _write_to_self(self, value):
        pass


def _setup_with_loop(self):
    """setUp() for classes whose own setUp builds a mocked stock loop."""
    test_utils.TestCase.setUp(self)
    self.loop = new_loop() if RINGLOOP else _SelectorEventLoopForMockingTests()
    self.set_event_loop(self.loop)


def _runners_new_loop(self):
    """test_runners.BaseTest.new_loop() builds a mocked BaseEventLoop whose
    shutdown_asyncgens() records that it ran; keep that record, on the loop
    under test."""
    loop = new_loop()
    loop.shutdown_ag_run = False
    shutdown_asyncgens = loop.shutdown_asyncgens

    async def recording_shutdown_asyncgens():
        loop.shutdown_ag_run = True
        await shutdown_asyncgens()

    loop.shutdown_asyncgens = recording_shutdown_asyncgens
    return loop


# ---------------------------------------------------------------------------
# What runs: (module, our class name, bases, namespace, install policy).
# A base is a name in the CPython module or an object.

_SPECS = [
    # test_events
    ("test_events", "EventLoopTests",
     ("UnixEventLoopTestsMixin", "SubprocessTestsMixin", test_utils.TestCase),
     {"create_event_loop": _create_event_loop}, False),
    ("test_events", "PolicyTests", ("PolicyTests",), {}, True),
    ("test_events", "TestPyGetEventLoop", ("TestPyGetEventLoop",), {}, True),
    ("test_events", "TestCGetEventLoop", ("TestCGetEventLoop",), {}, True),
    ("test_events", "TestServer", ("TestServer",), {}, True),
    # test_base_events
    ("test_base_events", "BaseEventLoopTests", ("BaseEventLoopTests",),
     {"setUp": _setup_with_loop}, True),
    ("test_base_events", "BaseEventLoopWithSelectorTests", ("BaseEventLoopWithSelectorTests",),
     {"setUp": _setup_with_loop}, True),
    ("test_base_events", "RunningLoopTests", ("RunningLoopTests",), {}, True),
    # test_runners
    ("test_runners", "RunTests", ("RunTests",), {"new_loop": _runners_new_loop}, True),
    ("test_runners", "RunnerTests", ("RunnerTests",), {"new_loop": _runners_new_loop}, True),
    # test_pep492
    ("test_pep492", "LockTests", ("LockTests",), {"setUp": _setup_with_loop}, True),
    ("test_pep492", "StreamReaderTests", ("StreamReaderTests",), {"setUp": _setup_with_loop}, True),
    ("test_pep492", "CoroutineTests", ("CoroutineTests",), {"setUp": _setup_with_loop}, True),
    # networking, ssl, subprocess: loop hooks
    ("test_sock_lowlevel", "SockTests", ("BaseSockTestsMixin", test_utils.TestCase),
     {"create_event_loop": _create_event_loop}, True),
    ("test_sendfile", "SendfileTests", ("SendfileTestsBase", test_utils.TestCase),
     {"create_event_loop": _create_event_loop}, True),
    ("test_buffered_proto", "BufferedProtocolTests", ("BufferedProtocolSelectorTests",),
     {"new_loop": _create_event_loop}, True),
    ("test_server", "StartServerTests", ("SelectorStartServerTests",),
     {"new_loop": _create_event_loop}, True),
    ("test_sslproto", "StartTLSTests", ("SelectorStartTLSTests",),
     {"new_loop": _create_event_loop}, True),
    ("test_unix_events", "SelectorEventLoopUnixSocketTests", ("SelectorEventLoopUnixSocketTests",),
     {"setUp": _setup_with_loop}, True),
]

# Classes that get their loop from asyncio (policy / asyncio.run / Runner /
# IsolatedAsyncioTestCase): run as they are, with the policy installed.
_POLICY_CLASSES = {
    "test_base_events": (),
    "test_context": ("DecimalContextTest",),
    "test_eager_task_factory": (
        "PyEagerTaskFactoryLoopTests", "CEagerTaskFactoryLoopTests",
        "NonEagerTests", "EagerTests", "NonEagerPyTaskTests", "EagerPyTaskTests",
        "NonEagerCTaskTests", "EagerCTaskTests",
    ),
    "test_futures2": ("CFutureTests", "PyFutureTests", "FutureReprTests"),
    "test_locks": ("LockTests", "EventTests", "ConditionTests", "SemaphoreTests", "BarrierTests"),
    "test_queues": (
        "QueueBasicTests", "QueueGetTests", "QueuePutTests", "LifoQueueTests",
        "PriorityQueueTests", "QueueJoinTests", "LifoQueueJoinTests", "PriorityQueueJoinTests",
        "QueueShutdownTests", "LifoQueueShutdownTests", "PriorityQueueShutdownTests",
    ),
    "test_server": ("TestServer2", "UnixServerCleanupTests"),
    "test_ssl": ("TestSSL",),
    "test_sslproto": ("SslProtoHandshakeTests",),
    "test_staggered": ("StaggeredTests",),
    "test_streams": ("StreamTests",),
    "test_subprocess": (
        "SubprocessThreadedWatcherTests", "SubprocessMultiLoopWatcherTests",
        "SubprocessSafeWatcherTests", "SubprocessFastWatcherTests",
        "SubprocessPidfdWatcherTests", "GenericWatcherTests",
    ),
    "test_taskgroups": ("TestTaskGroup",),
    "test_tasks": (
        "CTask_CFuture_Tests", "CTask_CFuture_SubclassTests", "CTaskSubclass_PyFuture_Tests",
        "PyTask_CFutureSubclass_Tests", "CTask_PyFuture_Tests", "PyTask_CFuture_Tests",
        "PyTask_PyFuture_Tests", "PyTask_PyFuture_SubclassTests", "CTask_Future_Tests",
        "PyCurrentLoopTests", "CCurrentLoopTests", "RunCoroutineThreadsafeTests",
        "SleepTests", "CompatibilityTests",
    ),
    "test_threads": ("ToThreadTests",),
    "test_timeouts": ("TimeoutTests",),
    "test_unix_events": ("TestFunctional", "TestFork"),
    "test_waitfor": ("AsyncioWaitForTest", "WaitForShieldTests"),
}


# ---------------------------------------------------------------------------
# Building the classes


def _cpython_modules():
    mods = {}
    for info in sorted(pkgutil.iter_modules(_pkg.__path__), key=lambda m: m.name):
        if not info.name.startswith("test_"):
            continue
        try:
            mods[info.name] = importlib.import_module(f"test.test_asyncio.{info.name}")
        except unittest.SkipTest:
            # Windows-only modules skip themselves at import.
            continue
    return mods


def _concrete_classes(mod):
    loader = unittest.TestLoader()
    for name, obj in vars(mod).items():
        if (
            isinstance(obj, type)
            and issubclass(obj, unittest.TestCase)
            and obj.__module__ == mod.__name__
            and loader.getTestCaseNames(obj)
        ):
            yield name, obj


def _defining_class(cls, attr):
    for klass in cls.__mro__:
        if attr in vars(klass):
            return klass
    return None


def _mark_for(reason):
    if reason.startswith(X.BUG):
        if reason.startswith(X.HANG):
            return pytest.mark.xfail(run=False, reason=reason)
        return pytest.mark.xfail(strict=True, reason=reason)
    return pytest.mark.skip(reason=reason)


def _wrap(orig, mark):
    """A fresh function calling `orig` (CPython's, which must stay unmarked)
    carrying `mark`; async if `orig` is."""
    if inspect.iscoroutinefunction(orig):

        async def wrapper(self, *args, **kwargs):
            return await orig(self, *args, **kwargs)

    else:

        def wrapper(self, *args, **kwargs):
            return orig(self, *args, **kwargs)

    wrapper.__name__ = orig.__name__
    wrapper.__qualname__ = getattr(orig, "__qualname__", orig.__name__)
    wrapper.__doc__ = orig.__doc__
    return mark(wrapper)


USED_KEYS = set()  # exclusion keys that matched something (checked below)
GENERATED = {}  # our class name -> (CPython module, class-level reason or None)


def _make_class(modname, ourname, bases, ns, install_policy, class_reason=None):
    cls = type(ourname, (_Harness,) + tuple(bases), dict(ns, _rl_install_policy=install_policy))
    cls.__module__ = __name__
    cls.__qualname__ = f"{modname}__{ourname}"
    cls.__name__ = f"{modname}__{ourname}"
    for attr in unittest.TestLoader().getTestCaseNames(cls):
        if class_reason is not None:
            reason = class_reason
        else:
            definer = _defining_class(cls, attr)
            keys = [f"{modname}.{ourname}.{attr}"]
            if definer is not None and definer.__name__ != ourname:
                keys.append(f"{modname}.{definer.__name__}.{attr}")
            keys.append(f"{modname}.{ourname}")
            if definer is not None and definer.__name__ != ourname:
                keys.append(f"{modname}.{definer.__name__}")
            reason = None
            for key in keys:
                reason = X.lookup(key, PY)
                if reason is not None:
                    USED_KEYS.add(key)
                    break
            if reason is not None and not X.applies(reason, RINGLOOP):
                reason = None
        if reason is not None:
            setattr(cls, attr, _wrap(getattr(cls, attr), _mark_for(reason)))
    GENERATED[cls.__name__] = (modname, ourname, class_reason)
    globals()[cls.__name__] = cls
    return cls


def _build():
    mods = _cpython_modules()
    covered = set()
    for modname, ourname, bases, ns, install_policy in _SPECS:
        mod = mods.get(modname)
        if mod is None:
            continue
        try:
            resolved = [getattr(mod, b) if isinstance(b, str) else b for b in bases]
        except AttributeError:
            continue  # not in this Python version
        _make_class(modname, ourname, resolved, ns, install_policy)
        for b in bases:
            if isinstance(b, str):
                covered.add(f"{modname}.{b}")
        covered.add(f"{modname}.{ourname}")
    for modname, names in _POLICY_CLASSES.items():
        mod = mods.get(modname)
        if mod is None:
            continue
        for name in names:
            base = getattr(mod, name, None)
            if base is None:
                continue
            _make_class(modname, name, (base,), {}, True)
            covered.add(f"{modname}.{name}")
    unaccounted = []
    for modname, mod in mods.items():
        for name, cls in _concrete_classes(mod):
            key = f"{modname}.{name}"
            if key in covered or key in X.STOCK_LOOP_VARIANTS:
                continue
            reason = X.lookup(key, PY)
            if reason is None:
                unaccounted.append(key)
                continue
            USED_KEYS.add(key)
            _make_class(modname, name, (cls,), {}, True, class_reason=reason)
    return mods, unaccounted


_MODS, _UNACCOUNTED = _build()


# ---------------------------------------------------------------------------
# Checks on the harness itself


@pytest.fixture(scope="module", autouse=True)
def _scratch_cwd():
    """CPython tests create files named by test.support.os_helper.TESTFN,
    relative to the working directory: keep them out of the checkout."""
    old = os.getcwd()
    with tempfile.TemporaryDirectory(prefix="ringloop-cpython-") as tmp:
        os.chdir(tmp)
        try:
            yield
        finally:
            os.chdir(old)


def test_every_cpython_class_is_accounted_for():
    assert _UNACCOUNTED == [], (
        "CPython test classes neither run nor listed in cpython_exclusions.py: "
        + ", ".join(_UNACCOUNTED)
    )


def test_no_stale_exclusions():
    stale = sorted(set(X.keys_for(PY)) - USED_KEYS)
    stale += sorted(
        key
        for key in X.STOCK_LOOP_VARIANTS
        if not hasattr(_MODS.get(key.split(".")[0]), key.split(".")[1])
    )
    assert stale == [], f"exclusions that match no test on {PY}: {stale}"


def test_loop_under_test():
    """The generated classes really get the loop under test."""
    expected = ringloop.Loop if RINGLOOP else asyncio.SelectorEventLoop
    loop = new_loop()
    try:
        assert type(loop) is expected
    finally:
        loop.close()
    with _loop_injection(True):
        loop = asyncio.new_event_loop()
        try:
            assert type(loop) is expected
        finally:
            loop.close()
