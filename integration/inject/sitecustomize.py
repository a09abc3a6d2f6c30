"""Loaded by every Python process the library gate starts (integration/run.py
puts this folder on PYTHONPATH, so test subprocesses get it too).

RINGLOOP_GATE_LOOP=ringloop: asyncio's default policy becomes ringloop's, so
asyncio.run(), asyncio.Runner(), new_event_loop() and get_event_loop() make
ringloop loops, also after a test resets the policy with
set_event_loop_policy(None).  RINGLOOP_GATE_LOOP=asyncio changes nothing.
Either way the loops made are counted (ringloop's and asyncio's own) and the
counts written at exit to RINGLOOP_GATE_COUNTS/<pid>.json: the runner checks
that the ringloop run really ran on ringloop and the asyncio run never did."""
import os

_mode = os.environ.get("RINGLOOP_GATE_LOOP")
if _mode in ("asyncio", "ringloop"):
    import asyncio
    import atexit
    import json

    import ringloop

    _counts = {"mode": _mode, "ringloop": 0, "asyncio": 0}

    _rl_init = ringloop.Loop.__init__

    def _counting_rl_init(self, *args, **kwargs):
        _counts["ringloop"] += 1
        _rl_init(self, *args, **kwargs)

    ringloop.Loop.__init__ = _counting_rl_init

    _aio_init = asyncio.BaseEventLoop.__init__

    def _counting_aio_init(self, *args, **kwargs):
        _counts["asyncio"] += 1
        _aio_init(self, *args, **kwargs)

    asyncio.BaseEventLoop.__init__ = _counting_aio_init

    if _mode == "ringloop":
        # set_event_loop_policy(None) re-creates asyncio.DefaultEventLoopPolicy
        asyncio.DefaultEventLoopPolicy = ringloop.EventLoopPolicy
        asyncio.set_event_loop_policy(ringloop.EventLoopPolicy())

    _dir = os.environ.get("RINGLOOP_GATE_COUNTS")

    @atexit.register
    def _write_counts():
        if _dir and (_counts["ringloop"] or _counts["asyncio"]):
            try:
                with open(os.path.join(_dir, f"{os.getpid()}.json"), "w") as f:
                    json.dump(_counts, f)
            except OSError:
                pass
