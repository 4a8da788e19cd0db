"""The parts of the WebSocket fan-out benchmark; ``bench/fanout.py`` runs them, and
``bench/scale.py`` and ``bench/pods.py`` reuse them. In the order the data flows:

- ``plan``: what is measured and for how long (sizes, rates, repetitions, goals; shorter with
  ``--quick``);
- ``servers``: the servers under test (bare and queued Starlette, deltagate, the Node peers) as
  processes;
- ``workers``: the load generator processes (``bench/_loadgen.py``), driven over their pipes;
- ``rig``: what every phase drives (the plan, the load generator, Redis' admin client);
- ``rates``: subscribers at offered event rates, alternating servers, measured per step;
- ``phases``: idle connections, replay, the reconnect storm, stalled readers;
- ``results``: what the phases measured;
- ``report``: the section of bench/RESULTS.md, with its figures (``bench/_plots.py``).

Not a benchmark itself (``run.py`` runs only modules ``bench/<name>.py`` whose name does not start
with ``_``).
"""
