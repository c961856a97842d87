"The repository agrees with itself: README and index.ipynb, notebooks and library, valid workflows."
import hashlib, re, shutil, subprocess, sys, pytest
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
    import ipywidgets, ipycanvas # noqa: F401 (both installed)
    from importlib.metadata import version
    assert int(ipywidgets.__version__.split('.')[0]) == 8 and version('jupyterlab_widgets').startswith('3.')
