"""The fault-tolerance report (``make report``, issue 11 point 7).

``collect`` runs the producers (failover, chaos, benchmark, replication lag, restore drill)
as subprocesses and keeps their JSON under ``reports/<date>/data/``; ``render`` turns that
JSON into PNG plots, ``index.md`` and a self-contained ``index.html``, without running
anything (``python -m bench.fault_report --from-data DIR``). See ``docs/operations.md``,
Fault-tolerance report.
"""
