"""Reports: saved results (profiler sweeps, search studies, layouts) turned into plots and markdown.

Modules, one concern each:

* :mod:`.results`: profiler result rows -> one checked DataFrame, and the provenance every figure carries;
* :mod:`.series`: the data of each sweep plot (latency with spread, memory split, roofline, speedups);
* :mod:`.study`: opening a stored study (the only place), and the data of its plots (Pareto points,
  hypervolume history);
* :mod:`.trials`: a study's trials as rows, its Pareto front, where the seeded layouts land, progress;
* :mod:`.front`: dominance, the non-dominated set and exact hypervolume (one definition);
* :mod:`.confidence`: intervals over repeated measurements and dominance with confidence (pure statistics);
* :mod:`.confirmed`: which layouts ``search confirm`` re-measures, and what its measurements say;
* :mod:`.export`: a study's ``trials.csv``, ``pareto.csv``, ``summary.json`` and ``pareto.png``;
* :mod:`.layout`: the data of a layout strip (per layer: operator, widths, parameters, cache);
* :mod:`.plots`: drawing only (data + optional axis -> axis);
* :mod:`.markdown`: tables and the report document;
* :mod:`.build`: one function per report: compute, draw, save PNG/SVG/CSV, write ``report.md``.

Data functions are tested without rendering; nothing but :mod:`.plots`, :mod:`.build` and :mod:`.export` (its
PNG) imports matplotlib.
"""
