"""One module per experiment; each builds its Markdown section from a ``BenchSettings``.

The experiments run by ``bench/run.py`` expose ``section(settings) -> str``. The modules behind
the scripts that write their own parts (``attack_matrix``, ``beyond_paper``,
``detector_variants``, ``text_rotten_tomatoes``) expose ``main(argv) -> int``.

Nothing is imported here, so ``python -m bench.experiments.<name>`` (a measurement child
process) loads only its own module.
"""
