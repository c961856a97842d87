"Randomised: whatever bytes or small images the loader is given, it loads them correctly or raises MnistDataError."
import io, numpy as np, pytest
from hypothesis import example, given, settings, strategies as st, HealthCheck
from hypothesis.extra.numpy import arrays
from PIL import Image
from mnist_scratch.files import MnistDataError
from mnist_scratch.images import read_digit


pytestmark = pytest.mark.slow # `make test-fast` leaves these out
def png_bytes(a, mode):
    buf = io.BytesIO()
    Image.fromarray(a, mode=mode).save(buf, format='PNG')
    return buf.getvalue()

@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=2000))
def test_arbitrary_bytes(tmp_path, data):
    fn = tmp_path/'x.png'
    fn.write_bytes(data)
    try: a = read_digit(fn)
    except MnistDataError as e: assert str(fn) in str(e)
    else: assert a.shape == (28, 28) and a.dtype == np.uint8

@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(a=arrays(np.uint8, st.just((28, 28)) | st.tuples(st.integers(1, 40), st.integers(1, 40))),
       cut=st.just(0) | st.integers(1, 100))
@example(a=np.zeros((28, 28), np.uint8), cut=1) # only the end marker cut: every pixel is still there
@example(a=np.zeros((28, 28), np.uint8), cut=13) # the image data's checksum cut too: PIL still decodes every pixel
def test_arbitrary_small_images(tmp_path, a, cut):
    "Grayscale PNGs of any size, possibly truncated: the 28x28 ones load with their exact pixels or fail clearly."
    fn = tmp_path/'x.png'
    data = png_bytes(a, 'L')
    fn.write_bytes(data[:len(data)-cut])
    if a.shape != (28, 28):
        with pytest.raises(MnistDataError, match=str(fn)): read_digit(fn)
    elif cut == 0: assert np.array_equal(read_digit(fn), a)
    else: # truncated: an error naming the file, or (when only checksums and the end marker were cut) the exact pixels
        try: got = read_digit(fn)
        except MnistDataError as e: assert str(fn) in str(e)
        else: assert np.array_equal(got, a) # never wrong pixels without an error

# --- archive members: whatever an archive holds, extraction writes only inside the cache, or refuses ---
import tarfile, tempfile
from pathlib import Path
from conftest import make_tiny_mnist
from mnist_scratch.sources import find_mnist

NAME_PARTS = ['mnist_png', 'training', 'testing', '0', '7', 'x.png', '..', '.', '', 'a\\b', 'c:', '\x1b[2J', 'é', 'd'*120]
member = st.fixed_dictionaries(dict(
    name=st.lists(st.sampled_from(NAME_PARTS), min_size=1, max_size=5).map('/'.join) | st.sampled_from(['/abs.txt', '../up.txt']),
    type=st.sampled_from([tarfile.REGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.FIFOTYPE, tarfile.CHRTYPE]),
    linkname=st.sampled_from(['', '..', '../../outside/victim', '/etc/passwd', 'mnist_png/training/0/0.png']),
    data=st.binary(max_size=64)))

@pytest.fixture(scope='module')
def tiny_mnist(tmp_path_factory): return make_tiny_mnist(tmp_path_factory.mktemp('fuzz')/'tiny', n_train=1, n_test=1)

def snapshot(folder): return {p: (p.lstat().st_size, p.is_symlink()) for p in folder.rglob('*')}

@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(members=st.lists(member, max_size=6), with_mnist=st.booleans())
def test_archive_members(tiny_mnist, monkeypatch, members, with_mnist):
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp/'outside').mkdir()
        (tmp/'outside'/'victim').write_text('untouched')
        cache = tmp/'cache'
        monkeypatch.setenv('MNIST_SCRATCH_CACHE', str(cache))
        tgz = tmp/'fuzz.tgz'
        with tarfile.open(tgz, 'w:gz', format=tarfile.PAX_FORMAT) as tar:
            if with_mnist: tar.add(tiny_mnist, arcname='mnist_png')
            for m in members:
                info = tarfile.TarInfo(m['name'])
                info.type, info.linkname = m['type'], m['linkname']
                info.size = len(m['data']) if info.isreg() else 0
                tar.addfile(info, io.BytesIO(m['data']) if info.isreg() else None)
        before = snapshot(tmp/'outside')
        try: src = find_mnist(tgz)
        except MnistDataError as e: assert str(tgz) in str(e)
        else:
            assert with_mnist and all(m['type'] in (tarfile.REGTYPE, tarfile.DIRTYPE) for m in members)
            assert cache in src.path.parents
        assert snapshot(tmp/'outside') == before and (tmp/'outside'/'victim').read_text() == 'untouched'
        assert sorted(p.name for p in tmp.iterdir()) == sorted(['outside', 'fuzz.tgz'] + (['cache'] if cache.exists() else []))
        if cache.exists(): # nothing but plain files and folders, no leftovers
            assert not [p for p in cache.rglob('*') if p.is_symlink() or not (p.is_file() or p.is_dir())]
            assert not list(cache.rglob('.building-*'))
