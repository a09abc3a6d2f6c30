"""CPython test_asyncio tests that tests/test_cpython_suite.py does not run on
ringloop, each with its reason, per Python version where they differ.

Keys name CPython's tests: "module.Class.test", "module.Class" (every test
of the class) or "module.Mixin.test" for a test defined in a mixin (then it
applies to every generated class using that mixin).  "Class" is CPython's
class name, or for a class we combine from mixins our name for it
(test_events.EventLoopTests, test_sock_lowlevel.SockTests,
test_sendfile.SendfileTests); see test_cpython_suite.py.

The reason's category decides what happens:
  SUBPROC, PIPES, SENDFILE  ringloop lacks the feature yet: skipped on
                            ringloop; run on stock asyncio
                            (RINGLOOP_TEST_LOOP=asyncio)
  STOCK                     the test checks stock asyncio internals: skipped
  NOT_LOOP                  the CPython class does not run on a loop from a
                            factory or policy (stock loop class, the stock
                            test_utils.TestLoop, a mock loop, no loop): skipped
  BUG                       ringloop behaves differently from asyncio:
                            xfail(strict=True) on ringloop; HANG (a bug that
                            hangs or crashes the process): xfail(run=False)
A stale key (matching no test of the running Python) fails
test_no_stale_exclusions.
"""

SUBPROC = "subprocess (later issue)"
PIPES = "pipe transports (later issue)"
SENDFILE = "sendfile (later issue)"
STOCK = "tests stock asyncio internals"
NOT_LOOP = "not run on a loop from a factory"
BUG = "ringloop bug"
HANG = "ringloop bug (hangs)"

_NOT_IMPLEMENTED_YET = (SUBPROC, PIPES, SENDFILE)


def applies(reason, on_ringloop):
    """Whether an exclusion applies to the loop under test."""
    if on_ringloop:
        return True
    return not reason.startswith(_NOT_IMPLEMENTED_YET + (BUG,))


def sendfile(what):
    return f"{SENDFILE}: {what}"


def subproc(what):
    return f"{SUBPROC}: {what}"


def pipes(what):
    return f"{PIPES}: {what}"


def stock(what):
    return f"{STOCK}: {what}"


def not_loop(what):
    return f"{NOT_LOOP}: {what}"


def bug(what):
    return f"{BUG}: {what}"


def hang(what):
    return f"{HANG}: {what}"


# ---------------------------------------------------------------------------
# CPython classes whose tests run through one of our classes on the loop
# under test; they themselves bind the tests to a stock loop.  Not generated.

STOCK_LOOP_VARIANTS = {
    "test_events.EPollEventLoopTests": "test_events.EventLoopTests",
    "test_events.PollEventLoopTests": "test_events.EventLoopTests",
    "test_events.SelectEventLoopTests": "test_events.EventLoopTests",
    "test_sock_lowlevel.EPollEventLoopTests": "test_sock_lowlevel.SockTests",
    "test_sock_lowlevel.PollEventLoopTests": "test_sock_lowlevel.SockTests",
    "test_sock_lowlevel.SelectEventLoopTests": "test_sock_lowlevel.SockTests",
    "test_sendfile.EPollEventLoopTests": "test_sendfile.SendfileTests",
    "test_sendfile.PollEventLoopTests": "test_sendfile.SendfileTests",
    "test_sendfile.SelectEventLoopTests": "test_sendfile.SendfileTests",
    "test_buffered_proto.BufferedProtocolSelectorTests": "test_buffered_proto.BufferedProtocolTests",
    "test_server.SelectorStartServerTests": "test_server.StartServerTests",
    "test_sslproto.SelectorStartTLSTests": "test_sslproto.StartTLSTests",
}

# ---------------------------------------------------------------------------
# Whole classes not run (their tests are generated, each skipped).

_CLASSES = {
    # test_base_events
    "test_base_events.BaseEventTests": not_loop(
        "base_events helpers (_ipaddr_info, _set_reuseport) with mock sockets, no loop"),
    "test_base_events.BaseLoopSockSendfileTests": stock(
        "sock_sendfile's fallback path of BaseSelectorEventLoop (a loop without native "
        "sendfile), with constants.SENDFILE_FALLBACK_READBUFFER_SIZE patched"),
    "test_base_events.TestSelectorUtils": stock("selector_events._test_selector_event helper"),
    # test_buffered_proto, test_server, test_sslproto: Windows variants
    "test_buffered_proto.BufferedProtocolProactorTests": not_loop("ProactorEventLoop (Windows only)"),
    "test_server.ProactorStartServerTests": not_loop("ProactorEventLoop (Windows only)"),
    "test_sslproto.ProactorStartTLSTests": not_loop("ProactorEventLoop (Windows only)"),
    # test_events
    "test_events.HandleTests": stock(
        "asyncio.Handle built directly with a mock loop (ringloop.Handle is not "
        "constructible from Python)"),
    "test_events.TimerTests": stock(
        "asyncio.TimerHandle built directly with a mock loop (ringloop.TimerHandle is not "
        "constructible from Python)"),
    "test_events.AbstractEventLoopTests": not_loop(
        "the NotImplementedError stubs of asyncio.AbstractEventLoop itself"),
    "test_events.TestAbstractServer": not_loop("the stubs of asyncio.AbstractServer itself"),
    # test_futures: everything on test_utils.TestLoop
    "test_futures.DuckTests": not_loop("test_utils.TestLoop (stock BaseEventLoop, virtual clock)"),
    "test_futures.CFutureTests": not_loop("test_utils.TestLoop (stock BaseEventLoop, virtual clock)"),
    "test_futures.CSubFutureTests": not_loop("test_utils.TestLoop (stock BaseEventLoop, virtual clock)"),
    "test_futures.PyFutureTests": not_loop("test_utils.TestLoop (stock BaseEventLoop, virtual clock)"),
    "test_futures.CFutureDoneCallbackTests": not_loop(
        "test_utils.TestLoop (stock BaseEventLoop, virtual clock)"),
    "test_futures.CSubFutureDoneCallbackTests": not_loop(
        "test_utils.TestLoop (stock BaseEventLoop, virtual clock)"),
    "test_futures.PyFutureDoneCallbackTests": not_loop(
        "test_utils.TestLoop (stock BaseEventLoop, virtual clock)"),
    "test_futures.PyFutureInheritanceTests": not_loop(
        "test_utils.TestLoop (stock BaseEventLoop, virtual clock)"),
    "test_futures.CFutureInheritanceTests": not_loop(
        "test_utils.TestLoop (stock BaseEventLoop, virtual clock)"),
    # test_proactor_events, test_selector_events: stock loop implementations
    "test_proactor_events.ProactorSocketTransportTests": stock("proactor transports with mocks"),
    "test_proactor_events.ProactorDatagramTransportTests": stock("proactor transports with mocks"),
    "test_proactor_events.BaseProactorEventLoopTests": stock("BaseProactorEventLoop with mocks"),
    "test_proactor_events.ProactorEventLoopUnixSockSendfileTests": stock(
        "BaseProactorEventLoop sendfile with mocks"),
    "test_selector_events.BaseSelectorEventLoopTests": stock("BaseSelectorEventLoop with a mock selector"),
    "test_selector_events.SelectorTransportTests": stock("selector transports with mocks"),
    "test_selector_events.SelectorSocketTransportTests": stock("selector transports with mocks"),
    "test_selector_events.SelectorSocketTransportBufferedProtocolTests": stock(
        "selector transports with mocks"),
    "test_selector_events.SelectorDatagramTransportTests": stock("selector transports with mocks"),
    # no loop at all
    "test_protocols.ProtocolsAbsTests": not_loop("the protocol ABCs, no loop"),
    "test_transports.TransportTests": not_loop("the transport ABCs, no loop"),
    # test_subprocess
    "test_subprocess.SubprocessTransportTests": stock(
        "base_subprocess.BaseSubprocessTransport subclass on test_utils.TestLoop"),
    # test_tasks
    "test_tasks.PyIntrospectionTests": not_loop(
        "asyncio's _register_task/_enter_task/... with mock loops"),
    "test_tasks.CIntrospectionTests": not_loop(
        "asyncio's _register_task/_enter_task/... with mock loops"),
    "test_tasks.GenericTaskTests": not_loop("asyncio.Task class attributes, no loop"),
    "test_tasks.FutureGatherTests": not_loop("test_utils.TestLoop (stock BaseEventLoop, virtual clock)"),
    "test_tasks.CoroutineGatherTests": not_loop(
        "test_utils.TestLoop (stock BaseEventLoop, virtual clock)"),
    # test_unix_events
    "test_unix_events.SelectorEventLoopSignalTests": stock(
        "SelectorEventLoop's signal handling with asyncio.unix_events.signal mocked"),
    "test_unix_events.UnixReadPipeTransportTests": stock(
        "unix_events._UnixReadPipeTransport on test_utils.TestLoop with mocked os"),
    "test_unix_events.UnixWritePipeTransportTests": stock(
        "unix_events._UnixWritePipeTransport on test_utils.TestLoop with mocked os"),
    "test_unix_events.AbstractChildWatcherTests": not_loop("the AbstractChildWatcher stubs"),
    "test_unix_events.BaseChildWatcherTests": not_loop("the BaseChildWatcher stubs"),
    "test_unix_events.SafeChildWatcherTests": stock(
        "SafeChildWatcher on test_utils.TestLoop with mocked os.waitpid"),
    "test_unix_events.FastChildWatcherTests": stock(
        "FastChildWatcher on test_utils.TestLoop with mocked os.waitpid"),
    "test_unix_events.PolicyTests": stock(
        "the Unix DefaultEventLoopPolicy's child watcher management"),
    "test_unix_events.SelectorEventLoopUnixSockSendfileTests": stock(
        "_UnixSelectorEventLoop._sock_sendfile_native*() and loop._selector"),
}

# ---------------------------------------------------------------------------
# ringloop bugs: each makes CPython tests fail on ringloop and pass on asyncio.


_TESTLOOP_ONLY = not_loop(
    "uses only self.loop, a test_utils.TestLoop (stock BaseEventLoop, virtual clock)")

# ---------------------------------------------------------------------------
# Whole classes (or mixins) of the generated classes that run on the loop
# under test.

_RUN_CLASSES = {
    "test_subprocess.GenericWatcherTests.test_create_subprocess_fails_with_inactive_watcher": stock(
        "the Unix selector loop consults the policy's child watcher (is_active()); ringloop "
        "watches its children itself with pidfds and never asks a policy watcher, as uvloop"),
}

# ---------------------------------------------------------------------------
# Single tests, every version.

_TESTS = {
    # test_base_events.BaseEventLoopTests
    "test_base_events.BaseEventLoopTests.test__add_callback_cancelled_handle": stock("loop._add_callback() with an asyncio.Handle, loop._ready/_scheduled"),
    "test_base_events.BaseEventLoopTests.test__add_callback_handle": stock("loop._add_callback() with an asyncio.Handle, loop._ready/_scheduled"),
    "test_base_events.BaseEventLoopTests.test__run_once": stock("loop._scheduled and the timeout passed to the mocked loop._selector.select()"),
    "test_base_events.BaseEventLoopTests.test__run_once_cancelled_event_cleanup": stock("loop._scheduled/_timer_cancelled_count against base_events._MIN_* constants (blocks in _run_once() on a real loop)"),
    "test_base_events.BaseEventLoopTests.test__run_once_schedule_handle": stock("loop._scheduled/_ready"),
    "test_base_events.BaseEventLoopTests.test_call_later": stock("the handle is in loop._scheduled (and is an asyncio.TimerHandle)"),
    "test_base_events.BaseEventLoopTests.test_call_soon": stock("the handle is in loop._ready (and is an asyncio.Handle)"),
    "test_base_events.BaseEventLoopTests.test_not_implemented": stock("BaseEventLoop._make_*_transport/_process_events/_write_to_self stubs"),
    "test_base_events.BaseEventLoopTests.test_run_forever_pre_stopped": stock("asserts the mocked loop._selector.select(0) call"),
    "test_base_events.BaseEventLoopTests.test_single_selecter_event_callback_after_stopping": stock("feeds events through a mocked loop._selector/_process_events"),
    # test_base_events.BaseEventLoopWithSelectorTests
    "test_base_events.BaseEventLoopWithSelectorTests.test_accept_connection_exception": stock("SelectorEventLoop._accept_connection() with loop._remove_reader mocked"),
    "test_base_events.BaseEventLoopWithSelectorTests.test_accept_connection_retry": stock("SelectorEventLoop._accept_connection()"),
    "test_base_events.BaseEventLoopWithSelectorTests.test_create_connection_bluetooth": stock("a mock socket from a patched asyncio.base_events.socket: stock sock_connect() calls its connect(), ringloop's is a CONNECT op on its fileno()"),
    "test_base_events.BaseEventLoopWithSelectorTests.test_create_connection_ip_addr": stock("a mock socket from a patched asyncio.base_events.socket: stock sock_connect() calls its connect(), ringloop's is a CONNECT op on its fileno(), and asserts getaddrinfo is not called for an IP"),
    "test_base_events.BaseEventLoopWithSelectorTests.test_create_connection_ipv6_scope": stock("a mock socket from a patched asyncio.base_events.socket: stock sock_connect() calls its connect(), ringloop's is a CONNECT op on its fileno(), with loop._add_reader/_add_writer mocked"),
    "test_base_events.BaseEventLoopWithSelectorTests.test_create_connection_no_inet_pton": stock("a mock socket from a patched asyncio.base_events.socket: stock sock_connect() calls its connect(), ringloop's is a CONNECT op on its fileno()"),
    "test_base_events.BaseEventLoopWithSelectorTests.test_create_connection_service_name": stock("a mock socket from a patched asyncio.base_events.socket: stock sock_connect() calls its connect(), ringloop's is a CONNECT op on its fileno(), with loop._add_reader/_add_writer mocked"),
    "test_base_events.BaseEventLoopWithSelectorTests.test_create_datagram_endpoint_allow_broadcast": stock("replaces loop.sock_connect and asserts it is not called"),
    "test_base_events.BaseEventLoopWithSelectorTests.test_create_datagram_endpoint_cant_bind": stock("patches asyncio.base_events.socket"),
    "test_base_events.BaseEventLoopWithSelectorTests.test_create_datagram_endpoint_connect_err": stock("replaces loop.sock_connect, which stock create_datagram_endpoint calls"),
    "test_base_events.BaseEventLoopWithSelectorTests.test_create_datagram_endpoint_ip_addr": stock("patches asyncio.base_events.socket, mocks loop._add_reader"),
    "test_base_events.BaseEventLoopWithSelectorTests.test_create_datagram_endpoint_no_addrinfo": stock("patches asyncio.base_events.socket"),
    "test_base_events.BaseEventLoopWithSelectorTests.test_create_datagram_endpoint_nosoreuseport": stock("patches asyncio.base_events.socket"),
    "test_base_events.BaseEventLoopWithSelectorTests.test_create_datagram_endpoint_setblk_err": stock("patches asyncio.base_events.socket"),
    "test_base_events.BaseEventLoopWithSelectorTests.test_create_datagram_endpoint_socket_err": stock("patches asyncio.base_events.socket"),
    # test_events.EventLoopTests
    "test_events.EventLoopTests.test_timeout_rounding": stock("counts _run_once() calls by replacing loop._run_once; reads loop._selector"),
    # test_runners.RunTests
    # test_streams.StreamTests
    # test_unix_events.SelectorEventLoopUnixSocketTests
    # test_unix_events.TestFunctional
}

_TESTS.update({
    # test_base_events.BaseEventLoopTests: passes, but not on the loop under test
    "test_base_events.BaseEventLoopTests.test_create_task": not_loop(
        "builds its own base_events.BaseEventLoop subclass"),
    "test_base_events.BaseEventLoopTests.test_default_exc_handler_broken": not_loop(
        "builds its own base_events.BaseEventLoop subclass"),
    "test_base_events.BaseEventLoopTests.test_env_var_debug": not_loop(
        "checks asyncio.new_event_loop() in child interpreters (stock loop)"),
    "test_events.PolicyTests.test_event_loop_policy": not_loop(
        "the NotImplementedError stubs of asyncio.AbstractEventLoopPolicy itself"),
    # test_tasks.BaseTaskTests (all eight Task/Future variants): only the tests
    # that create a loop with asyncio.new_event_loop() run on the loop under test
    "test_tasks.SetMethodsTest": _TESTLOOP_ONLY,
    "test_tasks.BaseTaskTests.test_as_completed": _TESTLOOP_ONLY,
    "test_tasks.BaseTaskTests.test_as_completed_concurrent": _TESTLOOP_ONLY,
    "test_tasks.BaseTaskTests.test_as_completed_coroutine_use_running_loop": _TESTLOOP_ONLY,
    "test_tasks.BaseTaskTests.test_as_completed_coroutine_without_loop": _TESTLOOP_ONLY,
    "test_tasks.BaseTaskTests.test_as_completed_duplicate_coroutines": _TESTLOOP_ONLY,
    "test_tasks.BaseTaskTests.test_as_completed_invalid_args": _TESTLOOP_ONLY,
    "test_tasks.BaseTaskTests.test_as_completed_reverse_wait": _TESTLOOP_ONLY,
    "test_tasks.BaseTaskTests.test_as_completed_with_timeout": _TESTLOOP_ONLY,
    "test_tasks.BaseTaskTests.test_as_completed_with_unused_timeout": _TESTLOOP_ONLY,
    "test_tasks.BaseTaskTests.test_bare_create_named_task": _TESTLOOP_ONLY,
    "test_tasks.BaseTaskTests.test_bare_create_task": _TESTLOOP_ONLY,
    "test_tasks.BaseTaskTests.test_baseexception_during_cancel": _TESTLOOP_ONLY,
    "test_tasks.BaseTaskTests.test_cancel": _TESTLOOP_ONLY,
    "test_tasks.BaseTaskTests.test_cancel_both_task_and_inner_future": _TESTLOOP_ONLY,
    "test_tasks.BaseTaskTests.test_cancel_inner_future": _TESTLOOP_ONLY,
    "test_tasks.BaseTaskTests.test_cancel_task_catching": _TESTLOOP_ONLY,
    "test_tasks.BaseTaskTests.test_cancel_task_ignoring": _TESTLOOP_ONLY,
    "test_tasks.BaseTaskTests.test_cancel_yield": _TESTLOOP_ONLY,
    "test_tasks.BaseTaskTests.test_coroutine_non_gen_function": _TESTLOOP_ONLY,
    "test_tasks.BaseTaskTests.test_coroutine_non_gen_function_return_future": _TESTLOOP_ONLY,
    "test_tasks.BaseTaskTests.test_create_task_with_async_function": _TESTLOOP_ONLY,
    "test_tasks.BaseTaskTests.test_create_task_with_asynclike_function": _TESTLOOP_ONLY,
    "test_tasks.BaseTaskTests.test_create_task_with_noncoroutine": _TESTLOOP_ONLY,
    "test_tasks.BaseTaskTests.test_current_task": _TESTLOOP_ONLY,
    "test_tasks.BaseTaskTests.test_current_task_with_interleaving_tasks": _TESTLOOP_ONLY,
    "test_tasks.BaseTaskTests.test_ensure_future_coroutine": _TESTLOOP_ONLY,
    "test_tasks.BaseTaskTests.test_ensure_future_neither": _TESTLOOP_ONLY,
    "test_tasks.BaseTaskTests.test_error_in_call_soon": _TESTLOOP_ONLY,
    "test_tasks.BaseTaskTests.test_exception_traceback": _TESTLOOP_ONLY,
    "test_tasks.BaseTaskTests.test_gather_shield": _TESTLOOP_ONLY,
    "test_tasks.BaseTaskTests.test_generic_alias": _TESTLOOP_ONLY,
    "test_tasks.BaseTaskTests.test_get_stack": _TESTLOOP_ONLY,
    "test_tasks.BaseTaskTests.test_iscoroutinefunction": _TESTLOOP_ONLY,
    "test_tasks.BaseTaskTests.test_log_destroyed_pending_task": _TESTLOOP_ONLY,
    "test_tasks.BaseTaskTests.test_log_traceback": _TESTLOOP_ONLY,
    "test_tasks.BaseTaskTests.test_shield_cancel_inner": _TESTLOOP_ONLY,
    "test_tasks.BaseTaskTests.test_shield_cancel_outer": _TESTLOOP_ONLY,
    "test_tasks.BaseTaskTests.test_shield_coroutine_use_global_loop": _TESTLOOP_ONLY,
    "test_tasks.BaseTaskTests.test_shield_coroutine_use_running_loop": _TESTLOOP_ONLY,
    "test_tasks.BaseTaskTests.test_shield_coroutine_without_loop": _TESTLOOP_ONLY,
    "test_tasks.BaseTaskTests.test_shield_effect": _TESTLOOP_ONLY,
    "test_tasks.BaseTaskTests.test_shield_exception": _TESTLOOP_ONLY,
    "test_tasks.BaseTaskTests.test_shield_gather": _TESTLOOP_ONLY,
    "test_tasks.BaseTaskTests.test_shield_result": _TESTLOOP_ONLY,
    "test_tasks.BaseTaskTests.test_shield_shortcut": _TESTLOOP_ONLY,
    "test_tasks.BaseTaskTests.test_sleep": _TESTLOOP_ONLY,
    "test_tasks.BaseTaskTests.test_sleep_cancel": _TESTLOOP_ONLY,
    "test_tasks.BaseTaskTests.test_step_result_future": _TESTLOOP_ONLY,
    "test_tasks.BaseTaskTests.test_stop_while_run_in_complete": _TESTLOOP_ONLY,
    "test_tasks.BaseTaskTests.test_task_awaits_on_itself": _TESTLOOP_ONLY,
    "test_tasks.BaseTaskTests.test_task_basics": _TESTLOOP_ONLY,
    "test_tasks.BaseTaskTests.test_task_cancel_message_getter": _TESTLOOP_ONLY,
    "test_tasks.BaseTaskTests.test_task_cancel_message_setter": _TESTLOOP_ONLY,
    "test_tasks.BaseTaskTests.test_task_cancel_sleeping_task": _TESTLOOP_ONLY,
    "test_tasks.BaseTaskTests.test_task_cancel_waiter_future": _TESTLOOP_ONLY,
    "test_tasks.BaseTaskTests.test_task_del_collect": _TESTLOOP_ONLY,
    "test_tasks.BaseTaskTests.test_task_repr": _TESTLOOP_ONLY,
    "test_tasks.BaseTaskTests.test_task_repr_autogenerated": _TESTLOOP_ONLY,
    "test_tasks.BaseTaskTests.test_task_repr_name_not_str": _TESTLOOP_ONLY,
    "test_tasks.BaseTaskTests.test_task_repr_wait_for": _TESTLOOP_ONLY,
    "test_tasks.BaseTaskTests.test_task_set_methods": _TESTLOOP_ONLY,
    "test_tasks.BaseTaskTests.test_task_source_traceback": _TESTLOOP_ONLY,
    "test_tasks.BaseTaskTests.test_wait": _TESTLOOP_ONLY,
    "test_tasks.BaseTaskTests.test_wait_concurrent_complete": _TESTLOOP_ONLY,
    "test_tasks.BaseTaskTests.test_wait_duplicate_coroutines": _TESTLOOP_ONLY,
    "test_tasks.BaseTaskTests.test_wait_errors": _TESTLOOP_ONLY,
    "test_tasks.BaseTaskTests.test_wait_first_completed": _TESTLOOP_ONLY,
    "test_tasks.BaseTaskTests.test_wait_first_exception": _TESTLOOP_ONLY,
    "test_tasks.BaseTaskTests.test_wait_first_exception_in_wait": _TESTLOOP_ONLY,
    "test_tasks.BaseTaskTests.test_wait_invalid_args": _TESTLOOP_ONLY,
    "test_tasks.BaseTaskTests.test_wait_really_done": _TESTLOOP_ONLY,
    "test_tasks.BaseTaskTests.test_wait_with_exception": _TESTLOOP_ONLY,
    "test_tasks.BaseTaskTests.test_wait_with_iterator_of_tasks": _TESTLOOP_ONLY,
    "test_tasks.BaseTaskTests.test_wait_with_timeout": _TESTLOOP_ONLY,
    "test_tasks.BaseTaskTests.test_yield_future_passes_cancel": _TESTLOOP_ONLY,
    "test_tasks.BaseTaskTests.test_yield_wait_does_not_shield_cancel": _TESTLOOP_ONLY,
})

# Per Python version: added to (and overriding) the above.
_BY_VERSION = {
    (3, 11): {
    },
    (3, 12): {
        "test_subprocess.MultiLoopChildWatcherTests": not_loop(
            "only checks that MultiLoopChildWatcher() warns, no loop"),
        "test_tasks.BaseTaskTests.test_task_set_name_pylong": _TESTLOOP_ONLY,
        "test_tasks.BaseTaskTests.test_wait_generator": _TESTLOOP_ONLY,
    },
    (3, 13): {
        "test_subprocess.MultiLoopChildWatcherTests": not_loop(
            "only checks that MultiLoopChildWatcher() warns, no loop"),
        "test_base_events.BaseEventLoopTests.test_custom_run_forever_integration": stock(
            "counts the loop._process_events calls of _run_once() (blocks in _run_once() on a real loop)"),
        "test_tasks.BaseTaskTests.test_sleep_when_delay_is_nan": _TESTLOOP_ONLY,
        "test_tasks.BaseTaskTests.test_task_set_name_pylong": _TESTLOOP_ONLY,
        "test_tasks.BaseTaskTests.test_wait_generator": _TESTLOOP_ONLY,
    },
}


def _table(py):
    table = dict(_CLASSES)
    table.update(_RUN_CLASSES)
    table.update(_TESTS)
    table.update(_BY_VERSION.get(tuple(py), {}))
    return table


_TABLES = {}


def keys_for(py):
    return list(_get(py))


def _get(py):
    py = tuple(py)
    if py not in _TABLES:
        _TABLES[py] = _table(py)
    return _TABLES[py]


def lookup(key, py):
    """The reason `key` is excluded on Python `py` (a (major, minor) tuple),
    or None."""
    return _get(py).get(key)
