"""A worker process for the search tests: joins a study and runs it with the test evaluator.

    python tests/search_worker.py STORAGE STUDY [--sleep S] [--log FILE] [--max-trials N] [--grace S] [--locking]

``--log`` gets one JSON line per trial this worker finished (pid, trial number, state) and, from
the evaluator, one per layout it measured.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import optuna  # noqa: E402
from search_helpers import AnalyticEvaluator, LockingEvaluator  # noqa: E402

from lfm2_nas.search.lock import resolve_lock  # noqa: E402
from lfm2_nas.search.recovery import on_stale_trial  # noqa: E402
from lfm2_nas.search.storage import open_storage  # noqa: E402
from lfm2_nas.search.run import config_of, open_study, run_study  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("storage")
    parser.add_argument("study")
    parser.add_argument("--sleep", type=float, default=0.0)
    parser.add_argument("--log")
    parser.add_argument("--max-trials", type=int)
    parser.add_argument("--grace", type=int, default=120)
    parser.add_argument("--locking", action="store_true", help="take the run's CPU lock (default for the storage)")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    storage = open_storage(args.storage, on_stale_trial=on_stale_trial, heartbeat_interval_s=1, grace_period_s=args.grace)
    config = config_of(storage, args.study)
    study = open_study(config, storage, worker=True)
    if args.locking:
        evaluator = LockingEvaluator(resolve_lock(config.study.cpu_lock, args.storage), args.log, sleep_s=args.sleep)
    else:
        evaluator = AnalyticEvaluator(sleep_s=args.sleep, log=args.log)

    def finished(trial: optuna.trial.FrozenTrial) -> None:
        if args.log:
            with open(args.log, "a") as f:
                f.write(json.dumps({"pid": os.getpid(), "trial": trial.number, "state": trial.state.name}) + "\n")

    report = run_study(study, config, evaluator, max_trials=args.max_trials, on_trial=finished)
    print(json.dumps({"ran": report.ran, "failed": report.failed, "duplicates": report.duplicates,
                      "recovered": report.recovered, "stopped": report.stopped_reason}))


if __name__ == "__main__":
    main()
