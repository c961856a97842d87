"""Every shell step (`run:`) of the GitHub workflows, run here as GitHub runs it, on a fresh clone of the working tree:
a broken step fails here, not first on GitHub. Steps that need the internet or hours are skipped, each saying why."""
import configparser, os, shutil, subprocess, pytest, yaml
from pathlib import Path
from conftest import ROOT, make_tiny_mnist

WORKFLOWS = ROOT/'.github'/'workflows'
VENV = ROOT/'.venv'
CFG = configparser.ConfigParser(delimiters=['='])
CFG.read(ROOT/'settings.ini', encoding='utf-8')

# (workflow file, step name) -> why it does not run here. Everything else runs.
NOT_HERE = {
    ('test.yaml', 'Unit tests and every notebook end to end'): 'the test suite itself (this test runs inside it)',
    ('reproduce.yaml', 'Run every notebook, slow cells included (notebook 06 with its FULL_RUN switch on)'):
        'trains every model on the full MNIST, resnet18 included: hours on 2 cores (the weekly workflow runs it)',
    ('reproduce.yaml', 'The whole series from the command line'): 'trains every model on the full MNIST: hours on 2 cores',
    ('release.yaml', 'Install build and twine'): "installs into the runner's Python; here they are dev requirements of .venv",
}
# Steps that would reach the internet unless what they fetch is already here: the test puts it there first.
FASTAI_MNIST = 'fastai'  # the MNIST step: untar_data finds a (tiny) folder in fastai's data path, as GitHub's cache gives it
BROWSER = 'chromium'     # the browser step installs Chromium only when it is missing

def run_steps():
    "Every `run:` step of every workflow, in order: (file, job, step)."
    out = []
    for wf in sorted(WORKFLOWS.glob('*.y*ml')):
        for job, spec in yaml.safe_load(wf.read_text())['jobs'].items():
            out += [(wf.name, job, s) for s in spec.get('steps', []) if 'run' in s]
    return out

STEPS = run_steps()

@pytest.fixture(scope='module')
def clone(tmp_path_factory):
    """A fresh `git clone` of this repository with the working tree's changes on top, committed there (the lead commits
    later), and a .venv of links to this one whose install stamp is newer than everything: `make setup` has nothing to do."""
    dest = tmp_path_factory.mktemp('workflows')/'repo'
    git = lambda *a, cwd=ROOT: subprocess.run(['git', *a], cwd=cwd, capture_output=True, check=True, timeout=300).stdout.decode()
    git('clone', '-q', str(ROOT), str(dest))
    for f in git('ls-files', '-z', '--modified', '--others', '--exclude-standard').split('\0'):
        if f and (ROOT/f).is_file():
            (dest/f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT/f, dest/f)
    for f in git('ls-files', '-z', '--deleted').split('\0'):
        if f: (dest/f).unlink(missing_ok=True)
    git('add', '-A', cwd=dest)
    git('-c', 'user.name=test', '-c', 'user.email=test@example.com', 'commit', '-qm', 'the working tree', '--allow-empty', cwd=dest)
    (dest/'.venv').mkdir()
    for p in VENV.iterdir():
        if p.name != '.installed': (dest/'.venv'/p.name).symlink_to(p)
    (dest/'.venv'/'.installed').touch()
    (dest.parent/'github_env').touch() # outside the clone, as GitHub keeps it: the tree stays clean
    return dest

def github_env(clone):
    "What earlier steps wrote to $GITHUB_ENV, as GitHub passes it to the steps after them."
    return dict(l.split('=', 1) for l in (clone.parent/'github_env').read_text().splitlines() if '=' in l)

@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize('wf,job,step', STEPS, ids=[f"{w}:{s.get('name', s['run'][:30])}" for w, _, s in STEPS])
def test_workflow_step_runs(wf, job, step, clone, tmp_path):
    name = step.get('name', step['run'])
    if (wf, name) in NOT_HERE: pytest.skip(f'{wf}: "{name}": {NOT_HERE[(wf, name)]}')
    if BROWSER in step['run'] and not shutil.which('chromium'): pytest.skip(f'{wf}: "{name}": no Chromium here, and installing it needs the internet')
    env = {**os.environ, **github_env(clone), **{k: str(v) for k, v in step.get('env', {}).items()},
           'GITHUB_ENV': str(clone.parent/'github_env'), 'GITHUB_REF_NAME': 'v' + CFG['DEFAULT']['version'],
           'PATH': f"{clone/'.venv'/'bin'}{os.pathsep}{os.environ['PATH']}"} # setup-python's Python: here, .venv's
    if FASTAI_MNIST in step['run'] and 'untar_data' in step['run']:
        make_tiny_mnist(Path(os.environ['FASTAI_HOME'])/'data'/'mnist_png')
    r = subprocess.run(['bash', '--noprofile', '--norc', '-eo', 'pipefail', '-c', step['run']], cwd=clone, env=env,
                       capture_output=True, text=True, timeout=900) # the shell and options GitHub runs a step with
    assert r.returncode == 0, f'{wf}: "{name}" failed:\n' + r.stdout[-3000:] + r.stderr[-3000:]
    if 'GITHUB_ENV' in step['run'] and 'MNIST_SCRATCH_DATA' in step['run']:
        assert github_env(clone)['MNIST_SCRATCH_DATA'] == str(Path(os.environ['FASTAI_HOME'])/'data'/'mnist_png')

def test_every_step_that_does_not_run_here_exists():
    "The list of skipped steps names real steps: a renamed step runs here again, it is not silently dropped."
    names = {(wf, s.get('name')) for wf, _, s in STEPS}
    assert set(NOT_HERE) <= names, set(NOT_HERE) - names
