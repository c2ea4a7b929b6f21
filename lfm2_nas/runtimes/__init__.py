"""Ways of running a layout: eager PyTorch, ExecuTorch (XNNPACK) and llama.cpp (GGUF).

Each runtime is one module offering the interface of :mod:`lfm2_nas.runtimes.base`; the profiler
chooses one by name. Modules are imported on first use, so a runtime whose package is not installed
costs nothing until it is asked for.
"""
