"""Each story notebook runs alone, as on Colab or Kaggle: its hidden first cell installs the package where it is missing
(and does nothing here), its title links to Colab, Kaggle and Binder, and it needs neither nbdev nor fastbook.

The slow test does what a learner does: the wheel built from this checkout; a virtual environment outside the
repository with Jupyter and the package's requirements (as pip would fetch them) but not the package; one notebook
copied alone into an empty folder and run top to bottom with the data from `MNIST_SCRATCH_DATA` (as `untar_data` would
find it online). The install cell installs the wheel in place of GitHub's package (this machine is offline).
Creating that environment downloads PyTorch (minutes), so it is kept between runs in ~/.cache/mnist-scratch/alone-venv
(or MNIST_SCRATCH_ALONE_VENV) while the wheel's requirements stay the same (the package itself is uninstalled first, so
the install cell installs it again); MNIST_SCRATCH_FRESH_VENV=1 makes a new one every time, as CI does. Cells marked
`#| slow` (seed spreads: many trainings) are left out, as nbdev_test leaves them out; MNIST_SCRATCH_ALONE_SLOW=1 runs them.
A notebook alone reads the saved runs (06_full_run.json, ...) from GitHub; here a local server serves nbs/ in its place."""
import configparser, hashlib, json, os, re, shutil, subprocess, sys, time, types, zipfile, pytest
from pathlib import Path
from conftest import ROOT, REAL_DATA, local_server

CFG = configparser.ConfigParser(delimiters=['='])
CFG.read(ROOT/'settings.ini', encoding='utf-8')
GIT_URL, BRANCH = CFG['DEFAULT']['git_url'], CFG['DEFAULT']['branch']
OWNER_REPO = GIT_URL.split('github.com/', 1)[1]
STORY = [nb for nb in sorted((ROOT/'nbs').glob('[0-9][0-9]*_*.ipynb')) if int(nb.name[:2]) < 90]
WIDGETS = re.compile(r'\b(ipycanvas|ipywidgets)\b|mnist_scratch\.canvas\b')

def cells(nb): return json.loads(nb.read_text(encoding='utf-8'))['cells']
def src(c): return ''.join(c['source'])
def code(nb): return [src(c) for c in cells(nb) if c['cell_type'] == 'code']
def install_cell(nb): return code(nb)[0]
def uses_widgets(nb): return any(WIDGETS.search(s) for s in code(nb)[1:])

def test_there_are_seven_story_notebooks():
    assert len(STORY) >= 7 and {nb.name[:2] for nb in STORY} >= {'01', '02', '03', '04', '05', '06', '07'}

@pytest.mark.parametrize('nb', STORY, ids=lambda p: p.stem)
def test_first_code_cell_installs_the_package_hidden(nb):
    s = install_cell(nb)
    assert s.startswith('#| hide\n'), f'{nb.name}: the install cell must be the first code cell, hidden on the site'
    assert re.search(rf'^\s*%pip install -q git\+{re.escape(GIT_URL)}(\s|"|$)', s, re.M), s # the repository of settings.ini

@pytest.mark.parametrize('nb', STORY, ids=lambda p: p.stem)
def test_needs_neither_nbdev_nor_fastbook(nb):
    bad = [l for s in code(nb) for l in s.splitlines() if re.match(r'\s*(import|from)\s+(nbdev|fastbook)\b', l)]
    assert not bad, f'{nb.name}: {bad}'

@pytest.mark.parametrize('nb', STORY, ids=lambda p: p.stem)
def test_title_links_to_colab_kaggle_and_binder(nb):
    title = next(src(c) for c in cells(nb) if c['cell_type'] == 'markdown')
    rel = f'nbs/{nb.name}'
    for url in (f'https://colab.research.google.com/github/{OWNER_REPO}/blob/{BRANCH}/{rel}',
                f'https://kaggle.com/kernels/welcome?src={GIT_URL}/blob/{BRANCH}/{rel}',
                f'https://mybinder.org/v2/gh/{OWNER_REPO}/{BRANCH}?labpath=nbs%2F{nb.name}'):
        assert f']({url})' in title, f'{nb.name}: no link {url}'
    assert title.startswith('# ') and title.index('colab') > title.index('\n> ') # after the title and its summary

def test_binder_installs_the_package():
    req = (ROOT/'binder'/'requirements.txt').read_text()
    assert re.search(rf'^mnist_scratch @ git\+{re.escape(GIT_URL)}$', req, re.M) and re.search(r'^ipywidgets>=8', req, re.M)
    py = (ROOT/'binder'/'runtime.txt').read_text().strip()
    assert py == f"python-{CFG['DEFAULT']['min_python']}"

def run_install_cell(s, monkeypatch, missing=(), versions={}):
    """Run an install cell's text as IPython would, with the `%pip` magic recorded instead of run: the magics it calls.
    `missing`: packages that cannot be imported or found; `versions`: installed versions to pretend."""
    from IPython.core.inputtransformer2 import TransformerManager
    import importlib.metadata as md
    calls, real = [], md.version
    def version(name):
        name = name.replace('-', '_').lower()
        if name in missing: raise md.PackageNotFoundError(name)
        return versions.get(name) or real(name)
    monkeypatch.setattr(md, 'version', version)
    for m in missing: monkeypatch.setitem(sys.modules, m, None) # `import m` raises ImportError
    ip = types.SimpleNamespace(run_line_magic=lambda name, line, *a: calls.append((name, line)))
    exec(TransformerManager().transform_cell(s), {'get_ipython': lambda: ip})
    return calls

@pytest.mark.parametrize('nb', STORY, ids=lambda p: p.stem)
def test_install_cell_does_nothing_here(nb, monkeypatch, capsys):
    assert run_install_cell(install_cell(nb), monkeypatch) == []
    assert capsys.readouterr() == ('', '') # and prints nothing: the committed notebooks stay clean

@pytest.mark.parametrize('nb', STORY, ids=lambda p: p.stem)
def test_install_cell_installs_what_is_missing(nb, monkeypatch):
    s = install_cell(nb)
    calls = run_install_cell(s, monkeypatch, missing=('mnist_scratch',))
    assert len(calls) == 1 and calls[0][0] == 'pip' and f'git+{GIT_URL}' in calls[0][1].split()
    if uses_widgets(nb): # the canvas needs ipywidgets 8; Colab and Kaggle may come with 7
        for kw in ({'versions': {'ipywidgets': '7.7.1'}}, {'missing': ('ipycanvas',)}):
            calls = run_install_cell(s, monkeypatch, **kw)
            assert len(calls) == 1 and '"ipywidgets>=8"' in calls[0][1], (kw, calls)

# ---- the notebooks, each alone in a fresh environment ----

RUNNER = r'''
import sys, time, json, nbformat
from nbconvert.preprocessors import ExecutePreprocessor, CellExecutionError
fn, out = sys.argv[1], sys.argv[2]
nb = nbformat.read(fn, as_version=4)
t = time.time()
try: ExecutePreprocessor(timeout=1800, kernel_name='python3').preprocess(nb, {'metadata': {'path': str(__import__('pathlib').Path(fn).parent)}}); err = ''
except CellExecutionError as e: err = str(e)[-3000:]
nbformat.write(nb, fn)
json.dump({'seconds': round(time.time() - t, 1), 'error': err}, open(out, 'w'))
'''

CHECK = "import sys, mnist_scratch; print(sys.prefix); print(mnist_scratch.__file__)"

def wheel_requirements(whl):
    with zipfile.ZipFile(whl) as z:
        meta = z.read(next(n for n in z.namelist() if n.endswith('.dist-info/METADATA'))).decode()
    return sorted(l for l in meta.splitlines() if l.startswith('Requires-Dist:') and 'extra ==' not in l)

@pytest.fixture(scope='session')
def records():
    "A local server in GitHub's place for the saved runs a notebook alone reads (`MNIST_SCRATCH_RECORDS_URL`): its url, the paths asked."
    with local_server({f'/{f.name}': (200, f.read_bytes(), True) for f in (ROOT/'nbs').glob('*.json*')}) as server: yield server

@pytest.fixture(scope='session')
def fresh(tmp_path_factory, records):
    "The wheel of this checkout and a venv outside the repository with Jupyter and the wheel's requirements, not the package."
    if not REAL_DATA: pytest.skip('MNIST_SCRATCH_DATA is not set: the notebooks need the full MNIST')
    tmp = tmp_path_factory.mktemp('alone')
    src = tmp/'src' # the package's files only: the wheel is built from them, never in the checkout (no build/ there)
    src.mkdir()
    for f in ('settings.ini', 'setup.py', 'setup.cfg', 'pyproject.toml', 'MANIFEST.in', 'README.md', 'LICENSE'):
        if (ROOT/f).exists(): shutil.copy(ROOT/f, src/f)
    shutil.copytree(ROOT/'mnist_scratch', src/'mnist_scratch', ignore=shutil.ignore_patterns('__pycache__'))
    r = subprocess.run([sys.executable, '-m', 'pip', 'wheel', '--no-deps', '-q', '-w', str(tmp/'wheel'), str(src)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    (whl,) = (tmp/'wheel').glob('*.whl')
    stamp = hashlib.sha256(json.dumps([sys.version, wheel_requirements(whl)]).encode()).hexdigest()[:16]
    venv = tmp/'venv' if os.environ.get('MNIST_SCRATCH_FRESH_VENV') else \
        Path(os.environ.get('MNIST_SCRATCH_ALONE_VENV') or Path.home()/'.cache'/'mnist-scratch'/'alone-venv')
    py = venv/'bin'/'python'
    if not (venv/'stamp').is_file() or (venv/'stamp').read_text() != stamp:
        shutil.rmtree(venv, ignore_errors=True)
        t = time.time()
        subprocess.run([sys.executable, '-m', 'venv', str(venv)], check=True, timeout=600) # no system site-packages
        # Jupyter to run notebooks, and the package's requirements (what the install cell's pip would fetch; the
        # package itself is installed by the install cell below)
        reqs = [l.split(':', 1)[1].strip() for l in wheel_requirements(whl)]
        # within the versions make setup pins (constraints.txt), so pip finds them in its cache instead of downloading
        r = subprocess.run([str(py), '-m', 'pip', 'install', '-q', '-c', str(ROOT/'constraints.txt'), 'jupyter', 'nbconvert', 'ipykernel', *reqs],
                           capture_output=True, text=True, timeout=1800)
        assert r.returncode == 0, r.stderr[-3000:]
        (venv/'stamp').write_text(stamp)
        print(f'\nfresh venv: {time.time() - t:.0f} s')
    subprocess.run([str(py), '-m', 'pip', 'uninstall', '-y', '-q', 'mnist_scratch'], capture_output=True, timeout=300)
    assert subprocess.run([str(py), '-c', 'import mnist_scratch'], cwd=tmp, capture_output=True).returncode != 0
    env = {k: v for k, v in os.environ.items() if not k.startswith(('PYTHON', 'VIRTUAL_ENV', 'JUPYTER', 'MNIST_SCRATCH', 'FASTAI'))}
    env.update(PATH=f"{venv/'bin'}:{env.get('PATH', '')}", VIRTUAL_ENV=str(venv), JUPYTER_PREFER_ENV_PATH='1',
               MNIST_SCRATCH_DATA=REAL_DATA, MNIST_SCRATCH_CACHE=str(tmp/'cache'), FASTAI_HOME=str(tmp/'fastai'),
               MNIST_SCRATCH_RECORDS_URL=records.url) # the saved runs from the local server, as from GitHub
    (tmp/'runner.py').write_text(RUNNER)
    return types.SimpleNamespace(py=py, venv=venv, whl=whl, env=env, tmp=tmp, asked=records.asked)

def run_alone(fresh, nb_cells, name):
    "Run a notebook made of `nb_cells`, alone in an empty folder, in the fresh environment: (seconds, error, outputs)."
    import nbformat
    folder = fresh.tmp/name
    folder.mkdir()
    nb = nbformat.v4.new_notebook(cells=nb_cells)
    nb.metadata['kernelspec'] = {'name': 'python3', 'display_name': 'Python 3', 'language': 'python'}
    nbformat.write(nb, folder/f'{name}.ipynb')
    r = subprocess.run([str(fresh.py), str(fresh.tmp/'runner.py'), str(folder/f'{name}.ipynb'), str(fresh.tmp/f'{name}.json')],
                       cwd=folder, env=fresh.env, capture_output=True, text=True, timeout=2400)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads((fresh.tmp/f'{name}.json').read_text())
    return res['seconds'], res['error'], nbformat.read(folder/f'{name}.ipynb', as_version=4)

def for_here(s, fresh):
    "An install cell that installs the wheel built from this checkout in place of GitHub's (this machine is offline)."
    assert f'git+{GIT_URL}' in s
    return s.replace(f'git+{GIT_URL}', str(fresh.whl))

@pytest.fixture(scope='session')
def installed(fresh):
    "The install cell (07's, which also brings the canvas's widgets, once it has one) run alone, as a learner runs it first."
    import nbformat
    s = next((install_cell(nb) for nb in STORY if uses_widgets(nb) and 'git+' in install_cell(nb)), install_cell(STORY[0]))
    secs, err, nb = run_alone(fresh, [nbformat.v4.new_code_cell(for_here(s, fresh)), nbformat.v4.new_code_cell(CHECK)], 'install')
    assert not err, err
    prefix, where = nb.cells[1].outputs[0]['text'].split()
    assert Path(prefix) == fresh.venv and Path(where).is_relative_to(fresh.venv) # the kernel is the fresh venv's
    print(f'\ninstall cell: {secs:.0f} s')
    return fresh

# In the suite: the two notebooks that check the path a learner's data takes (the package installed by the install
# cell, MNIST found through MNIST_SCRATCH_DATA as untar_data would find it) in a few minutes; all seven with
# MNIST_SCRATCH_ALONE_ALL=1 (about an hour on 2 cores: 03 to 05 train for minutes each, and are run in place by
# test_notebooks.py anyway), or those named in MNIST_SCRATCH_ALONE (e.g. `06_resnet,07`: names' beginnings).
ONLY = [n for n in os.environ.get('MNIST_SCRATCH_ALONE', '').split(',') if n]
ALONE = STORY if os.environ.get('MNIST_SCRATCH_ALONE_ALL') else [nb for nb in STORY if nb.name.startswith(tuple(ONLY) or ('01', '02'))]
# the saved runs a notebook reads, which alone it must fetch (from the local server in GitHub's place)
READS = {'06_building_blocks': {'small_cnn_run.json'}, '06_resnet': {'06_full_run.json', 'small_cnn_run.json', '91_seed_runs.jsonl'}}

@pytest.mark.slow
@pytest.mark.timeout(3600)
@pytest.mark.parametrize('nb', ALONE, ids=lambda p: p.stem)
def test_notebook_runs_alone(nb, installed):
    import nbformat
    book = nbformat.read(nb, as_version=4)
    book.cells[next(i for i, c in enumerate(book.cells) if c.cell_type == 'code')].source = for_here(install_cell(nb), installed)
    if not os.environ.get('MNIST_SCRATCH_ALONE_SLOW'): # the cells marked `#| slow` (seed spreads: many trainings) are left out, as nbdev_test does
        book.cells = [c for c in book.cells if not (c.cell_type == 'code' and re.search(r'^#\|\s*slow\b', c.source, re.M))]
    book.cells.append(nbformat.v4.new_code_cell(CHECK)) # which package the notebook ran on
    installed.asked.clear()
    secs, err, out = run_alone(installed, book.cells, nb.stem)
    print(f'\n{nb.name}: {secs:.0f} s{" FAILED" if err else ""}')
    assert not err, f'{nb.name}: {err}'
    first = next(c for c in out.cells if c.cell_type == 'code')
    assert first.outputs == [] # the package is there: the install cell did nothing
    where = out.cells[-1].outputs[0]['text'].split()[1]
    assert Path(where).is_relative_to(installed.venv) # the installed wheel, not this checkout
    assert {Path(p).name for p in installed.asked} == READS.get(nb.stem, set()) # read online, none beside it
