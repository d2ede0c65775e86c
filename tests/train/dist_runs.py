"""Run ``python -m audiocraft.train`` several times in ONE torchrun launch (what the distributed tests use).

    torchrun --standalone --nproc_per_node 2 tests/train/dist_runs.py runs.json

``runs.json`` is a list of argument lists; each is run exactly as ``torchrun ... -m audiocraft.train ARGS``
would (``runpy`` with ``sys.argv`` set), one after the other in the same worker processes and process group, which
saves the start-up of a second launch. The exit codes are printed as ``EXIT_CODES [..]`` and the script fails if any is
non-zero.
"""
import json
import runpy
import sys

import torch.distributed as dist


def main() -> int:
    with open(sys.argv[1]) as fh:
        runs = json.load(fh)
    # One process group for all the runs (audiocraft.train leaves a group it did not create alone).
    dist.init_process_group("gloo")
    codes = []
    for args in runs:
        sys.argv = ["audiocraft.train", *args]
        try:
            runpy.run_module("audiocraft.train", run_name="__main__", alter_sys=True)
            codes.append(0)
        except SystemExit as exit_:
            codes.append(exit_.code if isinstance(exit_.code, int) else 1)
    dist.destroy_process_group()
    print("EXIT_CODES", codes, flush=True)
    return 0 if not any(codes) else 1


if __name__ == "__main__":
    sys.exit(main())
