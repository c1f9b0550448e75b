"""One worker process of `trainforge tune --workers N` (started by tune/search.py's run_workers).

    python -m trainforge.tune.worker CONFIG [key=value …] --worker I --trials K --threads T --storage URL --study S

It loads the same config, joins the study in the shared storage and runs K trials with T torch threads;
Optuna gives each worker's trials their own numbers. Ctrl-C marks its running trial failed and exits 130.
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="trainforge.tune.worker")
    p.add_argument("config")
    p.add_argument("overrides", nargs="*")
    p.add_argument("--worker", type=int, required=True)
    p.add_argument("--trials", type=int, required=True)
    p.add_argument("--threads", type=int, required=True)
    p.add_argument("--storage", required=True)
    p.add_argument("--study", required=True)
    p.add_argument("--sampler", default=None)
    p.add_argument("--parent-run", default=None)
    args = p.parse_args(argv)

    import torch

    from trainforge.errors import UserError
    from trainforge.tune.search import prepare, run_trials

    torch.set_num_threads(args.threads)
    try:
        s = prepare(args.config, args.overrides, storage=args.storage, sampler=args.sampler)
        s.study_name = args.study
        s.tcfg.workers = max(2, s.tcfg.workers)  # several processes share the storage
        run_trials(s, args.trials, worker=args.worker, threads=args.threads, parent_run=args.parent_run)
    except KeyboardInterrupt:
        return 130
    except UserError as e:
        print(f"tune worker {args.worker}: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
