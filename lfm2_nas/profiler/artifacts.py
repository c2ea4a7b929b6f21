"""The cache of exported artifacts: one file per (spec, quant, runtime version, seed) and, where the
artifact holds the cache itself (ExecuTorch), cache length.

Exporting a layout to a deployment runtime takes seconds to minutes, so every artifact is kept in a
folder (the profiler's is ``profiles/cache/artifacts``) beside a small JSON record of what it is and
what making it cost (:class:`~lfm2_nas.runtimes.base.Artifact`) and the file's SHA-256. A file whose
record is missing, or whose size or checksum disagrees with it (a partial copy, a crash mid-write,
a corrupted disk), is exported again. Each export runs in a freshly spawned process
(:func:`lfm2_nas.profiler.runner.run_in_child`), so its peak resident memory is its own and a crash
or out-of-memory kill costs one export, not the caller.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path

from lfm2_nas.io import atomic_write_text
from lfm2_nas.runtimes import get_runtime, installed_version
from lfm2_nas.runtimes.base import Artifact, ExportError, RuntimeUnavailable
from lfm2_nas.spec import ModelSpec


class ArtifactFailed(RuntimeError):
    """An export that did not produce an artifact (crash, out of memory, timeout); one line why."""


def artifact_path(backend: str, spec: ModelSpec, quant: str, max_len: int, directory: Path, seed: int = 0) -> Path:
    """Where the artifact of these inputs lives in ``directory`` (the runtime's version is in the name,
    so upgrading a runtime exports anew; the cache length only where the artifact holds the cache)."""
    runtime = get_runtime(backend)
    version = hashlib.sha256(installed_version(backend).encode()).hexdigest()[:8]
    length = f"-len{max_len}" if runtime.cache_in_artifact else ""
    return Path(directory) / backend / f"{spec.spec_hash()}-{quant}{length}-seed{seed}-v{version}{runtime.suffix}"


def ensure_artifact(
    backend: str,
    spec: ModelSpec,
    quant: str,
    max_len: int,
    directory: Path,
    *,
    seed: int = 0,
) -> Artifact:
    """The cached artifact of ``spec`` for ``backend``/``quant`` with a cache of ``max_len`` positions,
    exported now when it is missing or fails its check. :class:`ArtifactFailed` when the export
    process fails; :class:`~lfm2_nas.runtimes.base.ExportError` when the runtime cannot represent
    the layout (checked first, nothing is written)."""
    runtime = get_runtime(backend)
    runtime.check(spec, quant, max_len)
    path = artifact_path(backend, spec, quant, max_len, directory, seed)
    found = _verified(path)
    if found is None:
        _record(path).unlink(missing_ok=True)
        found = export_artifact(backend, spec, quant, max_len, path, seed=seed)
        record = {**found.to_dict(), "sha256": _sha256(path)}
        atomic_write_text(_record(path), json.dumps(record, indent=1) + "\n")
    # a file that does not hold the cache serves every length: it is opened with the one asked for
    return found if runtime.cache_in_artifact else replace(found, max_len=max_len)


def export_artifact(
    backend: str,
    spec: ModelSpec,
    quant: str,
    max_len: int,
    path: Path,
    *,
    seed: int = 0,
    checkpoint: Path | None = None,
) -> Artifact:
    """Export ``spec`` to ``path`` (the runtime exports in a spawned process of its own, so its peak
    memory is the export's); :class:`ArtifactFailed` when that process fails, nothing left at ``path``."""
    runtime = get_runtime(backend)
    runtime.check(spec, quant, max_len)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    try:
        return runtime.export(spec, quant, max_len, Path(path), seed=seed, checkpoint=checkpoint)
    except (ExportError, RuntimeUnavailable):
        raise
    except (RuntimeError, OSError, MemoryError) as err:
        Path(path).unlink(missing_ok=True)
        raise ArtifactFailed(str(err).splitlines()[0] if str(err) else type(err).__name__) from None


def _record(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def _verified(path: Path) -> Artifact | None:
    """The artifact at ``path`` if its record exists and its size and checksum match; else None."""
    try:
        record = json.loads(_record(path).read_text())
        if path.stat().st_size != record["size_bytes"] or _sha256(path) != record["sha256"]:
            return None
        del record["sha256"]
        return Artifact.from_dict(record)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()
