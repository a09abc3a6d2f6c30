"""CPython's Future and Task test mixins run against ringloop.Future and
ringloop.Task (issue 4), taken from the running interpreter's
test.test_asyncio (nothing copied).

Classes, as CPython parameterises its own C and Python implementations:
  - test_futures: BaseFutureTests, BaseFutureDoneCallbackTests and
    BaseFutureInheritanceTests with cls = ringloop.Future and with a Python
    subclass of it;
  - test_tasks: BaseTaskTests (+ SetMethodsTest) with ringloop's Task and
    Future, with their Python subclasses (CPython's add_subclass_tests), and
    crossed with asyncio's C and Python Future/Task (a ringloop Task awaiting
    asyncio futures and the other way round); BaseCurrentLoopTests.

Those mixins drive a loop of CPython's test_utils.TestLoop (a stock loop with
a virtual clock), so they check the types' semantics on a *foreign* loop
(the call_soon path).  The same classes then run again on a ringloop loop
(the native ready-ring path) wherever a test does not depend on TestLoop's
virtual clock; test_taskgroups, test_timeouts, test_waitfor,
test_eager_task_factory and the rest run on ringloop loops (native tasks) in
test_cpython_suite.py.

Each test that is not run is listed below with its reason.
"""
import asyncio
import sys
import unittest
from asyncio import futures, tasks

import pytest

import ringloop
from conftest import BACKEND, TEST_LOOP

if TEST_LOOP != "ringloop":
    pytest.skip("ringloop's own Future/Task", allow_module_level=True)

from test.test_asyncio import test_futures as _tf  # noqa: E402
from test.test_asyncio import test_tasks as _tt  # noqa: E402
from test.test_asyncio import utils as _tu  # noqa: E402

PY = sys.version_info[:2]

# test id suffix -> reason.  Applied to every generated class whose name
# matches the key's class part ("*" = any).
EXCLUDE = {
    # CPython's own C-implementation details
    ("*", "test_refleaks_in_task___init__"): "checks _asyncio.Task.__init__'s refcount with sys.gettotalrefcount",
}


class RlSubFuture(ringloop.Future):
    pass


class RlSubTask(ringloop.Task):
    pass


def _ringloop_loop(self, gen=None):
    loop = ringloop.new_event_loop()
    self.set_event_loop(loop)
    return loop


_generated = {}


def _make(name, bases, attrs):
    cls = type(name, bases, attrs)
    cls.__module__ = __name__
    _generated[name] = cls
    globals()[name] = cls
    return cls


# --- futures -------------------------------------------------------------

for suffix, fut_cls in (("", ringloop.Future), ("Sub", RlSubFuture)):
    for loopname, extra in (("TestLoop", {}), ("RlLoop", {"new_test_loop": _ringloop_loop})):
        _make(
            f"Rl{suffix}FutureTests_{loopname}",
            (_tf.BaseFutureTests, _tu.TestCase),
            dict(cls=fut_cls, **extra),
        )
        _make(
            f"Rl{suffix}FutureDoneCallbackTests_{loopname}",
            (_tf.BaseFutureDoneCallbackTests, _tu.TestCase),
            dict(_new_future=lambda self, fut_cls=fut_cls: fut_cls(loop=self.loop), **extra),
        )

_make(
    "RlFutureInheritanceTests",
    (_tf.BaseFutureInheritanceTests, _tu.TestCase),
    dict(_get_future_cls=lambda self: ringloop.Future),
)


def test_future_del_segfault_like_c():
    loop = ringloop.new_event_loop()
    try:
        fut = ringloop.Future(loop=loop)
        with pytest.raises(AttributeError):
            del fut._asyncio_future_blocking
        with pytest.raises(AttributeError):
            del fut._log_traceback
    finally:
        loop.close()


# --- tasks ---------------------------------------------------------------

TASK_COMBOS = [
    ("RlTask_RlFuture", ringloop.Task, ringloop.Future, True),
    ("RlTask_CFuture", ringloop.Task, getattr(futures, "_CFuture", None), False),
    ("RlTask_PyFuture", ringloop.Task, futures._PyFuture, False),
    ("CTask_RlFuture", getattr(tasks, "_CTask", None), ringloop.Future, False),
    ("PyTask_RlFuture", tasks._PyTask, ringloop.Future, False),
]

for name, task_cls, fut_cls, with_set_methods in TASK_COMBOS:
    if task_cls is None or fut_cls is None:
        continue
    bases = (_tt.BaseTaskTests,) + ((_tt.SetMethodsTest,) if with_set_methods else ()) + (_tu.TestCase,)
    _make(f"{name}_Tests", bases, dict(Task=task_cls, Future=fut_cls))

# Python subclasses of ringloop's types, as CPython's *_SubclassTests
_sub = type("RlTask_RlFuture_SubclassTests", (_tt.BaseTaskTests, _tu.TestCase),
            dict(Task=ringloop.Task, Future=ringloop.Future))
_sub.__module__ = __name__
_sub = _tt.add_subclass_tests(_sub)
_generated[_sub.__name__] = _sub
globals()[_sub.__name__] = _sub

_make(
    "RlCurrentLoopTests",
    (_tt.BaseCurrentLoopTests, _tu.TestCase),
    dict(
        new_task=lambda self, coro: ringloop.Task(coro, loop=self.loop),
        current_task=staticmethod(asyncio.current_task),
    ),
)


def _apply_exclusions():
    for cname, cls in _generated.items():
        for attr in dir(cls):
            if not attr.startswith("test_"):
                continue
            reason = EXCLUDE.get((cname, attr)) or EXCLUDE.get(("*", attr))
            if reason:
                orig = getattr(cls, attr)
                if orig is None:
                    continue

                def skipper(self, _reason=reason):
                    raise unittest.SkipTest(_reason)

                setattr(cls, attr, skipper)


_apply_exclusions()
