"""Whether ../shared/slurm/local-slurm (a real one-node SLURM) can start here: shared by
test_dag.py's and test_train.py's SLURM tests and bench/bench_dataset.py's SLURM part, which skip with the
reason when it cannot.

    from local_slurm import slurm_unavailable
    why = slurm_unavailable(Path("../shared/slurm/local-slurm"))
"""
import os
import shutil
from pathlib import Path


def slurm_unavailable(local_slurm: Path):
    """Why the one-node SLURM at `local_slurm` cannot run here, or None."""
    if not local_slurm.exists():
        return f"{local_slurm} is absent"
    if not all(shutil.which(b) for b in ("sbatch", "slurmctld", "slurmd", "munged")):
        return "slurm-wlm and munge are not installed (apt-get install -y slurm-wlm munge; `make setup` does it as root)"
    if os.geteuid() != 0:
        return "local-slurm needs root (munged and slurmd are started as their users)"
    return None
