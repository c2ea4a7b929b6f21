"""Reports: saved results (profiler sweeps, search studies, layouts) turned into plots and markdown.

Modules, one concern each:

* :mod:`.results`: profiler result rows -> one checked DataFrame, and the provenance every figure carries;
* :mod:`.series`: the data of each sweep plot (latency with spread, memory split, roofline, speedups);
* :mod:`.study`: the data of a study's plots (Pareto points, hypervolume history);
* :mod:`.hypervolume`: exact hypervolume of a point set;
* :mod:`.layout`: the data of a layout strip (per layer: operator, widths, parameters, cache);
* :mod:`.plots`: drawing only (data + optional axis -> axis);
* :mod:`.markdown`: tables and the report document;
* :mod:`.build`: one function per report: compute, draw, save PNG/SVG/CSV, write ``report.md``.

Data functions are tested without rendering; nothing but :mod:`.plots` and :mod:`.build` imports matplotlib.
"""
