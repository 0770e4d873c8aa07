"""Side-by-side benchmarks of Corral against runc and crun (issue #8).

``python -m bench [--quick] [SUITE...]`` runs the suites with the runtimes interleaved after
warm-up runs and writes ``bench/results.json`` and ``bench/RESULTS.md``. Pure parts (statistics,
pairing, rendering) live in ``stats``, ``model`` and ``report``; everything that touches the
kernel lives in ``proc``, ``peers``, ``host`` and the suite modules.
"""
