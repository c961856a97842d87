import os, numpy as np, pytest
from pathlib import Path
from PIL import Image

# The environment as the user or CI set it (the real data, the cache), captured before any test changes it.
ORIGINAL_ENV = dict(os.environ)
REAL_DATA = ORIGINAL_ENV.get('MNIST_SCRATCH_DATA')
ROOT = Path(__file__).parent.parent

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
