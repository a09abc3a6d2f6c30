"""pytest plugin the library gate loads with -p: writes each test's outcome
(passed, failed, skipped; failed if any phase failed) to the JSON file named
by RINGLOOP_GATE_REPORT, with the first lines of the failure."""
import json
import os

_results = {}


def pytest_runtest_logreport(report):
    nodeid = report.nodeid
    prev = _results.get(nodeid)
    if report.failed:
        text = str(report.longrepr) if report.longrepr is not None else ""
        lines = [ln[1:].strip() for ln in text.splitlines() if ln.startswith("E ")]
        lines = [ln for ln in lines if ln]
        why = (" / ".join(lines[:4]) if lines else text.splitlines()[-1] if text else "")[:400]
        if prev is None or prev[0] != "failed":
            _results[nodeid] = ("failed", f"{report.when}: {why}")
    elif report.skipped:
        if prev is None:
            _results[nodeid] = ("skipped", "")
    elif report.when == "call" and prev is None:
        _results[nodeid] = ("passed", "")


def pytest_sessionfinish(session):
    path = os.environ.get("RINGLOOP_GATE_REPORT")
    if path and not hasattr(session.config, "workerinput"):
        with open(path, "w") as f:
            json.dump(_results, f, indent=0, sort_keys=True)
