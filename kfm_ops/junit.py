"""A JSON report (pytest-json-report's schema) as JUnit XML, for CI systems that read JUnit.

Checks get theirs from pytest itself (``--junitxml``); ``kfm-maint`` writes the same steps
as its JSON report with ``--junit-xml PATH``: one test case per step of the action
(``kfm-maint.<action>`` / ``plan``, ``apply``, ``verify``) and one per verification check,
named as pytest names them (class ``opschecks.health.test_x``, name ``test_y``).
"""

from __future__ import annotations

import datetime as dt
import os
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from kfm_ops.redact import redact


def _names(nodeid: str) -> tuple[str, str]:
    """(classname, name) as pytest's junitxml derives them from a node id."""
    path, _, name = nodeid.rpartition("::")
    if not path:
        return "", nodeid
    if path.startswith("kfm-maint"):
        return path.replace("::", "."), name
    parts = path.split("::")
    module = parts[0].removesuffix(".py").replace("/", ".")
    return ".".join([module, *parts[1:]]), name


def _text(stage: dict[str, Any]) -> str:
    return redact(str(stage.get("longrepr") or ""))


def _first_line(text: str, default: str) -> str:
    return text.splitlines()[0][:500] if text.strip() else default


def junit_xml(report: dict[str, Any], *, suite: str) -> bytes:
    """The report as a JUnit XML document (one ``testsuite``)."""
    tests = report.get("tests", [])
    counts = {"failures": 0, "errors": 0, "skipped": 0}
    cases = []
    for test in tests:
        classname, name = _names(str(test.get("nodeid", "?")))
        stages = [test.get(p) or {} for p in ("setup", "call", "teardown")]
        case = ET.Element("testcase", classname=classname, name=name,
                          time=f"{sum(float(s.get('duration') or 0) for s in stages):.3f}")
        outcome = str(test.get("outcome", "error"))
        failed = next((s for s in stages if s.get("outcome") == "failed"), stages[1])
        if outcome == "failed":
            counts["failures"] += 1
            message = _text(failed)
            ET.SubElement(case, "failure", message=_first_line(message, "failed")).text = message
        elif outcome == "error":
            counts["errors"] += 1
            message = _text(failed)
            ET.SubElement(case, "error", message=_first_line(message, "error")).text = message
        elif outcome in ("skipped", "xfailed"):
            counts["skipped"] += 1
            reason = _text(stages[1]) or outcome
            ET.SubElement(case, "skipped", type="pytest.xfail" if outcome == "xfailed" else "pytest.skip",
                          message=_first_line(reason, outcome))
        cases.append(case)
    created = float(report.get("created", 0.0))
    testsuite = ET.Element("testsuite", {"name": suite, "tests": str(len(cases)),
                                         **{k: str(v) for k, v in counts.items()},
                                         "time": f"{float(report.get('duration', 0.0)):.3f}",
                                         "timestamp": dt.datetime.fromtimestamp(created, dt.UTC).isoformat(
                                             timespec="seconds")})
    properties = ET.SubElement(testsuite, "properties")
    for key, value in (report.get("environment") or {}).items():
        ET.SubElement(properties, "property", name=str(key), value=redact(str(value)))
    testsuite.extend(cases)
    root = ET.Element("testsuites")
    root.append(testsuite)
    ET.indent(root)
    document: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return document


def write_junit(path: Path, report: dict[str, Any], *, suite: str) -> None:
    """Write the JUnit document next to ``path`` and rename it over (readers never see half a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(junit_xml(report, suite=suite))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
