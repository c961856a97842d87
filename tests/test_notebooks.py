"Every notebook runs end to end with nbdev's test runner (cells marked `#| slow` are skipped)."
import subprocess, sys, pytest
from pathlib import Path
from conftest import ROOT, ORIGINAL_ENV


pytestmark = pytest.mark.slow # `make test-fast` leaves these out
NBS = sorted((ROOT/'nbs').glob('[0-9]*.ipynb'))

@pytest.mark.parametrize('nb', NBS, ids=lambda p: p.stem)
def test_notebook_runs(nb):
    # In the environment the suite was started with: CI points it at the full MNIST and a fresh cache.
    r = subprocess.run([str(Path(sys.executable).parent/'nbdev_test'), '--path', str(nb), '--do_print'],
                       cwd=ROOT, capture_output=True, text=True, env=ORIGINAL_ENV, timeout=1800)
    assert r.returncode == 0 and 'Success' in r.stdout, r.stdout[-5000:] + r.stderr[-5000:]
