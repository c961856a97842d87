"The repository agrees with itself: README and index.ipynb, notebooks and library, valid workflows."
import hashlib, json, re, shutil, subprocess, sys, pytest
from pathlib import Path
from conftest import ROOT

BIN = Path(sys.executable).parent

def run(*args):
    return subprocess.run([str(a) for a in args], cwd=ROOT, capture_output=True, text=True, timeout=300)

@pytest.mark.slow
def test_readme_is_generated_from_index():
    r = run(BIN/'jupyter', 'nbconvert', '--to', 'markdown', '--stdout', '--log-level=ERROR', 'nbs/index.ipynb')
    assert r.returncode == 0, r.stderr
    assert r.stdout == (ROOT/'README.md').read_text(), 'README.md is out of date: run `make readme`'

def snapshot(root):
    files = sorted([*(root/'nbs').glob('*.ipynb'), *(root/'mnist_scratch').glob('*.py')])
    return {f.relative_to(root): hashlib.sha256(f.read_bytes()).hexdigest() for f in files}

@pytest.mark.slow
def test_notebooks_clean_and_library_in_sync(tmp_path):
    "`make export` and `nbdev_clean`, run on a copy, change nothing: the working tree is never written."
    copy = tmp_path/'repo'
    shutil.copytree(ROOT, copy, symlinks=True, ignore=shutil.ignore_patterns('.git', '.venv', '_site', 'results', '__pycache__'))
    (copy/'.venv').symlink_to(ROOT/'.venv')
    for cmd in (['make', '-s', 'export'], [BIN/'nbdev_clean']):
        r = subprocess.run([str(a) for a in cmd], cwd=copy, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stdout + r.stderr
    ours, theirs = snapshot(ROOT), snapshot(copy)
    changed = sorted(str(f) for f in ours.keys() | theirs.keys() if ours.get(f) != theirs.get(f))
    assert not changed, f'{changed} differ from what the notebooks give: run `make prepare` and commit'

SYNC_STEP = 'Notebooks are clean and the library is in sync with them'

def sync_step():
    "The shell script of the GitHub `test` workflow's sync step, exactly as the workflow file has it."
    import yaml
    steps = yaml.safe_load((ROOT/'.github'/'workflows'/'test.yaml').read_text())['jobs']['test']['steps']
    return next(s['run'] for s in steps if s.get('name') == SYNC_STEP)

def second_modules():
    "Modules written by a notebook that is not their own (`#| export name`): nbdev appends those to their file again."
    cells = [c for nb in (ROOT/'nbs').glob('*.ipynb') for c in json.loads(nb.read_text())['cells']]
    return sorted({l.split()[2] for c in cells for l in ''.join(c['source']).splitlines()
                   if l.startswith('#| export ') and len(l.split()) == 3})

@pytest.mark.slow
@pytest.mark.xfail(bool(second_modules()), strict=True, reason=f"second modules {second_modules()}: a bare nbdev_export "
                   "appends their cells to their files again (a notebook per module fixes it)")
def test_github_sync_step_leaves_the_tree_clean(tmp_path):
    "The workflow's sync step (nbdev_clean, nbdev_export, make readme, then `git status`), run as CI runs it on a copy."
    copy = tmp_path/'repo'
    shutil.copytree(ROOT, copy, symlinks=True, ignore=shutil.ignore_patterns('.git', '.venv', '_site', 'results', '__pycache__'))
    (copy/'.venv').symlink_to(ROOT/'.venv')
    for args in (['init', '-q'], ['add', '-A'], ['-c', 'user.name=test', '-c', 'user.email=test@example.com', 'commit', '-qm', 'now']):
        subprocess.run(['git', *args], cwd=copy, check=True, capture_output=True, timeout=120) # the working tree as it is
    r = subprocess.run(['bash', '--noprofile', '--norc', '-eo', 'pipefail', '-c', sync_step()], cwd=copy,
                       capture_output=True, text=True, timeout=600) # the shell and options GitHub runs a step with
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]

@pytest.mark.slow
@pytest.mark.parametrize('wf', sorted((ROOT/'.github'/'workflows').glob('*.y*ml')), ids=lambda p: p.name)
def test_workflow_is_valid(wf):
    r = run(BIN/'check-jsonschema', '--builtin-schema', 'vendor.github-workflows', wf)
    assert r.returncode == 0, r.stdout + r.stderr

def test_ci_runs_the_readme_test_command():
    "The README's command for the whole suite, `make test` (not `make test-fast`), is the command CI runs."
    readme, ci = (ROOT/'README.md').read_text(), (ROOT/'.ci'/'run').read_text()
    assert re.search(r'^make test(\s|$)', readme, re.M) and 'make test' in ci.splitlines()

def test_readme_chart_is_the_one_notebook_90_drew():
    sys.path.insert(0, str(ROOT/'docs'))
    try: from chart import committed_chart, CHART
    finally: sys.path.remove(str(ROOT/'docs'))
    assert CHART.read_bytes() == committed_chart(), 'docs/results.png is out of date: run `make readme`'
    assert '](docs/results.png)' in (ROOT/'README.md').read_text()

def test_widgets_render_in_jupyterlab_4():
    "Notebook 07's canvas needs ipywidgets 8 (jupyterlab_widgets 3); fastbook's pin would give 7, which renders nothing."
    import ipywidgets, ipycanvas
    from importlib.metadata import version
    assert int(ipywidgets.__version__.split('.')[0]) == 8 and version('jupyterlab_widgets').startswith('3.')
