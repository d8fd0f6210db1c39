"""The pytest plugin that turns ``gates_tests/`` into moola's gated workflow.

Registered by the project's ``conftest.py``. It

* adds the ``moola`` option group (execution knobs named as in PyTorch Lightning) with ini
  equivalents ``moola_<name>``; precedence is command line > ini > --gates-config > profile;
* builds one validated :class:`~moola.config.Config` and shows it in the report header;
* provides the ``gate`` fixture that runs a gate through :mod:`moola.gates.runner` (upstream
  verdicts from the cache; a failed upstream skips the gate with its reason);
* attaches every verdict to the pytest-json-report entry of its test (``metadata.verdict``);
  in the controller process, appends each gate's results-log record as soon as its test is
  over (once per gate per session), refreshes report.json, and prints the summary table;
* leaves pytest's information commands (``--co``, ``--fixtures``, ``--help``, ...) alone: they
  train nothing, start no helper process and write nothing under ``reports/``;
* turns a full disk met while writing outputs into a clear message and a non-zero exit;
* after each gate's verdict, exports the gate's model when the approval rule approves it
  (:mod:`moola.approval`, :mod:`moola.export.exporter`: ``reports/runs/<run_id>/models/<name>/``,
  named in the gate's record under ``artifacts.model_export``);
* makes the decision (:mod:`moola.gates.decision_gate`) at the end of a session that judged
  gates but not the decision (``-x`` stopped it, or ``-k`` left it out), from the gates it
  recorded and without training, and puts it under report.json's top-level ``"decision"``;
* counts gates that passed on an inconclusive or warning verdict apart in pytest's footer.

Mid-run, the records come from pytest-json-report's per-test entries (its ``_json_tests``, the
same entries its final report lists), so a record written early equals the one the end of the
session would have derived.
"""

# pytest finds a plugin's hooks and fixtures among its module's attributes: re-exported here
from moola.plugin import fixtures as _fixtures
from moola.plugin.fixtures import gate, moola_ctx  # noqa: F401
from moola.plugin.options import pytest_addoption, pytest_report_header  # noqa: F401
from moola.plugin.records import pytest_report_teststatus, pytest_terminal_summary  # noqa: F401
from moola.plugin.session import (pytest_collection_finish,  # noqa: F401
                                  pytest_collection_modifyitems, pytest_configure,
                                  pytest_sessionfinish, pytest_unconfigure)

globals().update(_fixtures.BUILTIN_FIXTURES)  # one fixture per built-in artifact
