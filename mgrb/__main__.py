"""`python -m mgrb`: the same command line as `mgrb`; also how `mgrb run --nproc` and torchrun
start the processes of a run over several (training/distributed.py)."""

import os
import sys

from mgrb.cli import main

if __name__ == "__main__":
    code = main()
    if int(os.environ.get("WORLD_SIZE", "1") or 1) > 1:
        # One of several processes, its work written and its process group left: the
        # interpreter's teardown raced gloo's threads and aborted now and then
        # (std::terminate, about 1 exit in 10 on the CPU), so this process ends at once.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)
