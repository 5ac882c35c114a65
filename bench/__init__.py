"""Benchmarks of acgate's Activation Clustering (the tables of ``bench/RESULTS.md``).

Layout:

* :mod:`bench.common` — the frozen :class:`~bench.common.BenchSettings`, the command + machine
  block above each table, Markdown tables, peak RSS, atomic writes and cached runs;
* :mod:`bench.image_runs` — a trained proxy's activations bundled with the ground truth
  (``image_run``, ``digits_run``), ``detect_on`` and ``scores``, and the merged-class datasets;
* :mod:`bench.synthetic` — synthetic activations with planted poison (in memory or streamed);
* :mod:`bench.art_compat` — the numpy-2 shim for IBM ART's clustering analyzer;
* :mod:`bench.results` — the preamble and the assembly of ``RESULTS.md`` from ``bench/parts``;
* :mod:`bench.runner` — the command line of ``python bench/run.py`` (also ``python -m bench``);
* :mod:`bench.experiments` — one module per experiment; the scripts that write their own parts
  (``bench/attack_matrix.py`` and the others in ``bench.results.SCRIPT_PARTS``) are thin entry
  points to modules there.
"""
