"""A real single-node Slurm cluster (scripts/local-slurm.sh) for the tests of tests/slurm:
`local_slurm` starts one for the session in a temporary folder, yields it (its folder and the
environment its clients need, SLURM_CONF), stops it at the end and checks that none of its
processes is left (its recorded daemon pids, its job steps).

The tests are skipped only where they cannot run: not root and the packages missing (the
script installs them when run as root). Anywhere else a cluster that does not start fails."""

import pytest

from slurm_cluster import start_cluster, stop_cluster


@pytest.fixture(scope="session")
def local_slurm(tmp_path_factory):
    cluster = start_cluster(tmp_path_factory.mktemp("slurm"))
    try:
        yield cluster
    finally:
        stop_cluster(cluster)
