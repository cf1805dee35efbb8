"""Sim-to-real evaluation (``rlkd eval sim2real``): perturbation suites applied through
``env.params``, evaluation on an independent twin engine, real-log replay, and reports with
bootstrap confidence intervals.

Modules: :mod:`.suites` (conditions and named suites), :mod:`.evaluate` (batched evaluation),
:mod:`.replay` (log format, recording and replay), :mod:`.stats` (bootstrap, DTW),
:mod:`.report` (report.json / report.md / PNGs).
"""

from .evaluate import Episodes, SuiteResult, evaluate_one_at_a_time, evaluate_suite, run_first_episodes
from .suites import KINDS, SUITES, Condition, Suite, load_suite, parse_condition

__all__ = ["Condition", "Episodes", "KINDS", "SUITES", "Suite", "SuiteResult", "evaluate_one_at_a_time",
           "evaluate_suite", "load_suite", "parse_condition", "run_first_episodes"]
