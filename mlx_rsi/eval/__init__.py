"""Evaluation: task suites, paired comparison of two models, the gate, reports.

Modules: :mod:`.suites` (YAML schema, assertions), :mod:`.heldout` (the suite
built from held-out sessions), :mod:`.guards` (identity, general ability, earlier
versions), :mod:`.collect` (which suites one evaluation runs), :mod:`.runner`
(answers through the backend), :mod:`.scores`, :mod:`.stats` (paired bootstrap),
:mod:`.gate`, :mod:`.report` and :mod:`.plots`. ``mlx_rsi.evaluate`` composes them.
"""
