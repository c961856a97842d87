import os, numpy as np, pytest
from pathlib import Path
from PIL import Image

# The environment as the user or CI set it (the real data, the cache), captured before any test changes it.
ORIGINAL_ENV = dict(os.environ)
REAL_DATA = ORIGINAL_ENV.get('MNIST_SCRATCH_DATA')
ROOT = Path(__file__).parent.parent

# What the installed `mnist-scratch` script runs, found through its entry point (wherever pip put the script).
ENTRY = ("import sys; from importlib.metadata import entry_points; "
         "(ep,) = entry_points(group='console_scripts', name='mnist-scratch'); sys.exit(ep.load()())")

def run_cli(*args, timeout=300):
    "Run the installed `mnist-scratch` command as a user would, through its entry point."
    import subprocess, sys
    return subprocess.run([sys.executable, '-c', ENTRY, *map(str, args)], capture_output=True, text=True,
                          env=os.environ.copy(), timeout=timeout)

def digit_image(d, i=0):
    "A 28x28 uint8 image for digit `d`: a bright bar at rows 2d..2d+2, with a little noise from `i`."
    a = np.zeros((28, 28), np.uint8)
    a[2*d:2*d+3, 4:24] = 200 + i%50
    return a

def write_png(fn, a, mode='L'):
    fn.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(a, mode=mode).save(fn)

def make_tiny_mnist(root, n_train=3, n_test=2):
    "An MNIST-shaped folder of synthetic digits that the pixel-mean baseline classifies perfectly."
    for split, n in (('training', n_train), ('testing', n_test)):
        for d in range(10):
            for i in range(n): write_png(root/split/str(d)/f'{d*100+i}.png', digit_image(d, i))
    return root

@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    "Every test gets its own cache and fastai home, and no data set from the environment."
    monkeypatch.setenv('MNIST_SCRATCH_CACHE', str(tmp_path/'cache'))
    monkeypatch.setenv('FASTAI_HOME', str(tmp_path/'fastai'))
    monkeypatch.delenv('MNIST_SCRATCH_DATA', raising=False)

@pytest.fixture
def tiny(tmp_path):
    return make_tiny_mnist(tmp_path/'tiny')

@pytest.fixture
def no_download(monkeypatch):
    "Make fastai's download fail as it does offline, and count the attempts."
    import fastai.data.external as fe
    calls = []
    def fail(*args, **kwargs):
        calls.append(args)
        raise OSError('network is unreachable')
    monkeypatch.setattr(fe, 'untar_data', fail)
    return calls

# Imported once here, not inside the first test that needs it: fastai's import adds warning filters of its own.
import random, warnings, torch
import fastai.vision.all # noqa: F401
from mnist_scratch.fast import denormals_flushing

def global_state():
    "What a library function must not leave changed: the global RNGs, warning filters and format, denormal flushing."
    return dict(torch_rng=torch.get_rng_state(), python_rng=random.getstate(), numpy_rng=np.random.get_state()[1].tobytes(),
                warning_filters=list(warnings.filters), formatwarning=warnings.formatwarning, flush_denormal=denormals_flushing())

def pytest_configure(config):
    config.addinivalue_line('markers', 'global_rng: the test draws its own data from the global RNGs; they are restored after it, not checked')
    config.addinivalue_line('markers', 'slow: more than about a second; `make test-fast` leaves these out')

@pytest.fixture(autouse=True)
def leaves_no_global_state(request):
    "Fail a test after which the global RNGs, the warning filters or format, or denormal flushing are not as before."
    if request.node.get_closest_marker('global_rng'):
        with torch.random.fork_rng(): # the test's own random data: restored, not checked
            state = random.getstate(), np.random.get_state()
            yield
            random.setstate(state[0]); np.random.set_state(state[1])
        return
    before = global_state()
    yield
    after = global_state()
    changed = [k for k in before if not (torch.equal(before[k], after[k]) if k == 'torch_rng' else before[k] == after[k])]
    assert not changed, f'the test left global state changed: {changed}'
