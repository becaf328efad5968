"""orb-learning's benchmark: one harness, four parts, one results file.

``python -m bench`` (see :mod:`bench.__main__`). The harness: :mod:`server` (an embedded
server or ``--dsn``, a database per level), :mod:`timing` (rounds with the machine
reference, the load average), :mod:`data` (the rows and queries of a level),
:mod:`results` (the one schema of ``results.json``), :mod:`summary` and :mod:`details`
(``RESULTS.md``), :mod:`tables`. The parts: :mod:`search` (with :mod:`search_paths`),
:mod:`analytics`, :mod:`embeddings`, :mod:`telemetry` (with :mod:`telemetry_probes`).
"""
