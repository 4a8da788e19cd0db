"""The parts of the WebSocket fan-out benchmark; ``bench/fanout.py`` runs them. In the order the
data flows:

- ``plan``: what is measured and for how long (sizes, rates, goals; shorter with ``--quick``);
- ``servers``: the two servers under test, the ceiling and a deltagate pod, as processes;
- ``workers``: the load generator processes (``bench/_loadgen.py``), driven over their pipes;
- ``rig``: what every phase drives (the plan, the load generator, Redis' admin client);
- ``phases``: idle connections, replay and the reconnect storm, and all phases in turn;
- ``rates``: 1,000 subscribers at fixed and climbing event rates;
- ``results``: what the phases measured, per server;
- ``report``: the section of bench/RESULTS.md.

Not a benchmark itself (``run.py`` runs only modules ``bench/<name>.py`` whose name does not start
with ``_``).
"""
