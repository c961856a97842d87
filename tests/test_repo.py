"The repository agrees with itself: README and index.ipynb, notebooks and library, valid workflows."
import hashlib, json, subprocess, sys, pytest
from pathlib import Path
from conftest import ROOT

BIN = Path(sys.executable).parent

def run(*args):
    return subprocess.run([str(a) for a in args], cwd=ROOT, capture_output=True, text=True, timeout=300)

def test_readme_is_generated_from_index():
    r = run(BIN/'jupyter', 'nbconvert', '--to', 'markdown', '--stdout', '--log-level=ERROR', 'nbs/index.ipynb')
    assert r.returncode == 0, r.stderr
    assert r.stdout == (ROOT/'README.md').read_text(), 'README.md is out of date: run `make readme`'

def snapshot():
    files = sorted([*(ROOT/'nbs').glob('*.ipynb'), *(ROOT/'mnist_scratch').glob('*.py')])
    return {f.relative_to(ROOT): hashlib.sha256(f.read_bytes()).hexdigest() for f in files}

def test_notebooks_clean_and_library_in_sync():
    before = snapshot()
    for cmd in ('nbdev_clean', 'nbdev_export'):
        r = run(BIN/cmd)
        assert r.returncode == 0, r.stderr
    changed = [str(f) for f, h in snapshot().items() if before.get(f) != h]
    assert not changed, f'{changed} changed: run `make prepare` and commit'

def test_every_notebook_exports_its_own_module():
    "One notebook, one module: every module comes from exactly one notebook's `#| default_exp`."
    mods = sorted(p.stem for p in (ROOT/'mnist_scratch').glob('*.py') if not p.stem.startswith('_'))
    exported = sorted(line.split()[-1] for nb in (ROOT/'nbs').glob('*.ipynb') for c in json.loads(nb.read_text())['cells']
                      for line in ''.join(c['source']).splitlines() if line.startswith('#| default_exp'))
    assert mods == exported

@pytest.mark.parametrize('wf', sorted((ROOT/'.github'/'workflows').glob('*.y*ml')), ids=lambda p: p.name)
def test_workflow_is_valid(wf):
    r = run(BIN/'check-jsonschema', '--builtin-schema', 'vendor.github-workflows', wf)
    assert r.returncode == 0, r.stdout + r.stderr

def test_ci_runs_the_readme_test_command():
    readme, ci = (ROOT/'README.md').read_text(), (ROOT/'.ci'/'run').read_text()
    assert 'make test' in readme and 'make test' in ci
