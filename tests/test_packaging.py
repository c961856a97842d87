"""The package as PyPI and pip see it: ranges for requirements (exact versions only in constraints.txt, for `make setup`),
the version in one place, a wheel and an sdist that `twine check` passes, and a `make setup` that shows its progress."""
import configparser, re, subprocess, sys, zipfile, tarfile, shutil, pytest
from importlib.metadata import version as installed_version, PackageNotFoundError
from pathlib import Path
from packaging.requirements import Requirement
from conftest import ROOT

BIN = Path(sys.executable).parent
CFG = configparser.ConfigParser(delimiters=['='])
CFG.read(ROOT/'settings.ini', encoding='utf-8')
SETTINGS = CFG['DEFAULT']
REQS = [Requirement(r) for r in SETTINGS['requirements'].split()]
DEV_REQS = [Requirement(r) for r in SETTINGS['dev_requirements'].split()]
# The ends of the ranges: 2.14.1/0.29.1 are this .venv's; torch 2.13.0 ran the fast math, training and baseline tests in a venv
# of its own; torchvision 0.28.0 installed there but did not load (CUDA build, CPU torch): see settings.ini.
TESTED = {'torch': ('2.13.0', '2.14.1'), 'torchvision': ('0.28.0', '0.29.1')}

def norm(name): return re.sub(r'[-_.]+', '-', name).lower()

def constraints():
    "constraints.txt as {normalized name: exact version}."
    lines = [l.split('#')[0].strip() for l in (ROOT/'constraints.txt').read_text().splitlines()]
    pins = [l.split('==') for l in lines if l]
    assert all(len(p) == 2 for p in pins), f'constraints.txt: every line is `name==version`: {[p for p in pins if len(p) != 2]}'
    return {norm(n): v for n, v in pins}

def test_requirements_are_tested_ranges():
    "torch and torchvision are ranges whose ends are the releases tried, and nothing the package needs is pinned exactly."
    reqs = {norm(r.name): r for r in REQS}
    assert not [r for r in REQS if any(s.operator in ('==', '===') for s in r.specifier)], 'exact pins go to constraints.txt'
    for name, (low, high) in TESTED.items():
        spec = reqs[name].specifier
        assert spec.contains(low) and spec.contains(high), (name, str(spec))
        assert any(s.operator == '>=' and s.version.startswith(low.rsplit('.', 1)[0]) for s in spec), f'{name}: lowest is {low}'
        assert any(s.operator == '<' for s in spec), f'{name}: an upper bound (the next release is untested)'

def test_constraints_pin_every_requirement_inside_its_range():
    pins = constraints()
    for r in REQS + DEV_REQS:
        assert norm(r.name) in pins, f'{r.name} is not in constraints.txt: run `make constraints`'
        assert r.specifier.contains(pins[norm(r.name)], prereleases=True), f'constraints.txt: {r.name}=={pins[norm(r.name)]} is not {r}'
    assert pins['fastbook'] and 'ipywidgets' in pins and pins['ipywidgets'].startswith('8.'), 'fastbook (without its <8 pin) and ipywidgets 8'
    assert pins['torch'] == TESTED['torch'][1] and pins['torchvision'] == TESTED['torchvision'][1]

def test_this_venv_runs_the_constrained_versions():
    "The environment the tests run in is the one `make setup` makes, for everything the package and its tests name."
    pins = constraints()
    for r in REQS + DEV_REQS:
        try: v = installed_version(r.name)
        except PackageNotFoundError: pytest.fail(f'{r.name} is not installed: run `make setup`')
        assert v == pins[norm(r.name)], f'{r.name} {v} here, {pins[norm(r.name)]} in constraints.txt: `make setup`, or `make constraints` after an upgrade'

def test_version_in_one_place():
    "settings.ini holds the version; nbdev_export writes it into __init__.py (put_version_in_init); setup.py reads it."
    assert SETTINGS['put_version_in_init'] == 'True'
    init = (ROOT/'mnist_scratch'/'__init__.py').read_text()
    assert re.findall(r'__version__\s*=\s*"([^"]+)"', init) == [SETTINGS['version']]
    for f in ('setup.py', 'pyproject.toml'): # no version written there: setup.py takes settings.ini's
        assert not re.search(r'''version\s*=\s*['"]''', (ROOT/f).read_text()), f"{f} names a version: it belongs in settings.ini"
    assert re.search(r"^cfg_keys = '[^']*\bversion\b", (ROOT/'setup.py').read_text(), re.M), 'setup.py passes settings.ini\'s version on'

def test_make_setup_shows_progress_and_uses_the_constraints():
    "`make setup`'s commands (a dry run): pip is not silenced, every install is constrained, fastbook comes without deps."
    r = subprocess.run(['make', '-n', '-B', 'setup'], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    pips = [l for l in r.stdout.splitlines() if ' pip install' in l]
    assert len(pips) >= 3 and all('-c constraints.txt' in l for l in pips), pips
    assert not [l for l in pips if re.search(r'\s(-q|--quiet)\b', l)], 'pip stays silent for minutes with --quiet'
    assert [l for l in pips if '--no-deps fastbook' in l] and not [r for r in DEV_REQS if norm(r.name) == 'fastbook']

def files_to_ship(dest):
    "The working tree as git would commit it (tracked and new files, not the ignored ones), copied into `dest`."
    r = subprocess.run(['git', 'ls-files', '-z', '--cached', '--others', '--exclude-standard'], cwd=ROOT, capture_output=True, timeout=60, check=True)
    for f in r.stdout.decode().split('\0'):
        if f and (ROOT/f).is_file():
            (dest/f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT/f, dest/f)
    return dest

@pytest.mark.slow
@pytest.mark.timeout(600)
def test_wheel_and_sdist_build_and_pass_twine(tmp_path):
    "`python -m build` (on a copy, without setuptools' deprecation banners) and `twine check --strict` as the release workflow runs them."
    src = files_to_ship(tmp_path/'src')
    r = subprocess.run([BIN/'python', '-m', 'build', '--no-isolation', '--outdir', tmp_path/'dist', src], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert not re.search(r'Deprecat|!!\n', r.stdout + r.stderr), 'setuptools warns: ' + (r.stdout + r.stderr)[-3000:]
    (whl,), (sdist,) = (tmp_path/'dist').glob('*.whl'), (tmp_path/'dist').glob('*.tar.gz')
    r = subprocess.run([BIN/'twine', 'check', '--strict', whl, sdist], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.count('PASSED') == 2, r.stdout + r.stderr
    with zipfile.ZipFile(whl) as z:
        names = z.namelist()
        meta = z.read(next(n for n in names if n.endswith('.dist-info/METADATA'))).decode()
        entry = z.read(next(n for n in names if n.endswith('.dist-info/entry_points.txt'))).decode()
    field = lambda k: re.findall(rf'^{k}: (.*)$', meta, re.M)
    assert field('Version') == [SETTINGS['version']] and field('License-Expression') == ['Apache-2.0']
    assert not [c for c in field('Classifier') if c.startswith('License ::')]
    runtime = [Requirement(r) for r in field('Requires-Dist') if 'extra ==' not in r]
    assert {(norm(r.name), r.specifier) for r in runtime} == {(norm(r.name), r.specifier) for r in REQS}
    assert not [r for r in runtime if norm(r.name) in TESTED and '==' in str(r.specifier)]
    modules = {p.name for p in (ROOT/'mnist_scratch').glob('*.py')}
    assert modules <= {Path(n).name for n in names if n.startswith('mnist_scratch/')}
    assert 'mnist-scratch = mnist_scratch.cli:main' in entry
    with tarfile.open(sdist) as t:
        top = {Path(*Path(n).parts[1:]).as_posix() for n in t.getnames()}
    assert {'settings.ini', 'setup.py', 'pyproject.toml', 'LICENSE', 'README.md'} <= top
    assert {f'mnist_scratch/{m}' for m in modules} <= top
