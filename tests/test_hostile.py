"Hostile and unlucky inputs: crafted archives, damaged caches, odd folder entries, arguments. One clear line each."
import errno, gzip, io, os, shutil, tarfile, time, zlib, numpy as np, pytest, torch
from pathlib import Path
from PIL import Image
from conftest import cli_code, digit_image, write_png, make_tiny_mnist
from mnist_scratch import archive, cache, files, images
from mnist_scratch.files import MnistDataError, printable
from mnist_scratch.images import read_digit, MAX_IMAGE_BYTES
from mnist_scratch.cache import cache_dir, cache_entries
from mnist_scratch.sources import find_mnist, load_mnist
from mnist_scratch.cli import main

pytestmark = pytest.mark.timeout(120) # a regression that hangs or fills a disk fails instead

def load(src, **kw): return load_mnist(src, show_progress=False, **kw)

def add_member(tar, name, data=b'x', **kw):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    for k, v in kw.items(): setattr(info, k, v)
    tar.addfile(info, io.BytesIO(data) if info.isreg() else None)

def mnist_tgz(fn, root):
    "An archive of the MNIST folder `root`."
    with tarfile.open(fn, 'w:gz') as tar: tar.add(root, arcname='mnist_png')
    return fn

def evil_tgz(fn, tiny, extra):
    """An archive that starts as MNIST does, with one folder of images (extracted, then removed when the archive is
    refused), then has the members `extra` (dicts for `add_member`). The whole tiny folder before them only made each test extract 50 more files."""
    with tarfile.open(fn, 'w:gz') as tar:
        for part in ('', 'training'): tar.add(tiny/part, arcname=f'mnist_png/{part}'.rstrip('/'), recursive=False)
        tar.add(tiny/'training'/'0', arcname='mnist_png/training/0')
        for m in extra: add_member(tar, **m)
    return fn

def outside_files(tmp_path):
    "Every path under `tmp_path` outside the cache folder, with its size."
    return {p: p.lstat().st_size for p in tmp_path.rglob('*') if cache_dir() not in p.parents and p != cache_dir()}

def archives(): return sorted(p.name for p in (cache_dir()/'archives').iterdir()) if (cache_dir()/'archives').is_dir() else []

# --- 1. crafted archives: only plain files and folders, nothing written outside the cache ---

@pytest.mark.parametrize('member, kind', [
    (dict(name='mnist_png/link', type=tarfile.SYMTYPE, linkname='somewhere'), 'symbolic link'),
    (dict(name='mnist_png/hard', type=tarfile.LNKTYPE, linkname='mnist_png/training/0/0.png'), 'hard link'),
    (dict(name='mnist_png/dev', type=tarfile.CHRTYPE, devmajor=1, devminor=3), 'device'),
    (dict(name='mnist_png/fifo', type=tarfile.FIFOTYPE), 'FIFO'),
])
def test_archive_with_links_or_devices_is_refused(tiny, tmp_path, member, kind):
    tgz = evil_tgz(tmp_path/'evil.tgz', tiny, [member])
    before = outside_files(tmp_path)
    with pytest.raises(MnistDataError, match=f'refused, member mnist_png/\\w+ is a {kind}; an MNIST archive holds only files and folders'):
        find_mnist(tgz)
    assert outside_files(tmp_path) == before and archives() == []

def test_symlink_chain_beyond_path_max_is_refused(tiny, tmp_path):
    "The shape of CVE-2025-4517: links through long folder names, resolving past PATH_MAX, then a write through them."
    target = tmp_path/'home'/'.bashrc'
    target.parent.mkdir()
    target.write_text('original')
    name = 'd' * 247
    members = []
    path = 'mnist_png'
    for i in range(16): # a chain of long folders, each with a link back up
        members.append(dict(name=f'{path}/{name}', type=tarfile.DIRTYPE))
        members.append(dict(name=f'{path}/l{i}', type=tarfile.SYMTYPE, linkname=name))
        path = f'{path}/l{i}'
    members.append(dict(name='mnist_png/escape', type=tarfile.SYMTYPE, linkname=f"{path}/{'../' * 64}{target}"))
    members.append(dict(name='mnist_png/escape/x', data=b'overwritten'))
    tgz = evil_tgz(tmp_path/'evil.tgz', tiny, members)
    with pytest.raises(MnistDataError, match='is a symbolic link'): find_mnist(tgz)
    assert target.read_text() == 'original' and archives() == []

@pytest.mark.parametrize('name, msg', [
    ('../escaped.txt', 'would be written outside'), ('mnist_png/../../escaped.txt', 'would be written outside'),
    ('/tmp/mnist_scratch_abs.txt', 'would be written outside'),
    ('mnist_png/a\\..\\..\\x.txt', 'not safe in a file name'), ('mnist_png/\x1b[2J.txt', 'not safe in a file name'),
])
def test_archive_member_names_are_checked(tiny, tmp_path, name, msg):
    tgz = evil_tgz(tmp_path/'evil.tgz', tiny, [dict(name=name)])
    before = outside_files(tmp_path)
    with pytest.raises(MnistDataError, match=msg) as e: find_mnist(tgz)
    assert '\x1b' not in str(e.value) and outside_files(tmp_path) == before and archives() == []
    assert not Path('/tmp/mnist_scratch_abs.txt').exists() # where the absolute name points, outside tmp_path

def test_duplicate_member_is_refused(tiny, tmp_path):
    tgz = evil_tgz(tmp_path/'dup.tgz', tiny, [dict(name='mnist_png/training/0/0.png', data=b'other')])
    with pytest.raises(MnistDataError, match='clashes with another member'): find_mnist(tgz)

# --- 2. size limits: bombs stop early ---

def test_huge_member_is_refused_from_its_header(tmp_path):
    "A member that claims 6 GB is refused before one byte of it is read or written."
    info = tarfile.TarInfo('mnist_png/training/0/bomb.png')
    info.size = 6 << 30
    tgz = tmp_path/'bomb.tgz'
    tgz.write_bytes(gzip.compress(info.tobuf(format=tarfile.GNU_FORMAT) + bytes(1 << 20)))
    start = time.perf_counter()
    with pytest.raises(MnistDataError, match='has 6,442,450,944 bytes; no MNIST image has more than 1,048,576'): find_mnist(tgz)
    assert time.perf_counter() - start < 5 and archives() == []

def zeros_tgz(fn, n, size):
    "An archive of `n` members of `size` zero bytes: it compresses about a thousandfold."
    with tarfile.open(fn, 'w:gz') as tar:
        for i in range(n): add_member(tar, f'mnist_png/z{i}', bytes(size))
    return fn

def test_gzip_bomb_stops_at_the_total_limit(tmp_path, monkeypatch):
    monkeypatch.setattr(archive, 'MAX_TAR_BYTES', 4 << 20) # the real limit is 512 MB; the mechanism is the same
    tgz = zeros_tgz(tmp_path/'bomb.tgz', 8, 1 << 20) # 8 MB of zeros, twice the limit, in an 8 KB file
    assert tgz.stat().st_size < 20_000
    with pytest.raises(MnistDataError, match='refused, it unpacks to more than 4 MB; MNIST unpacks to 73 MB'): find_mnist(tgz)
    assert archives() == [] and sum(p.stat().st_size for p in cache_dir().rglob('*') if p.is_file()) == 0

def test_too_many_members(tmp_path, monkeypatch):
    monkeypatch.setattr(archive, 'MAX_MEMBERS', 50)
    with pytest.raises(MnistDataError, match='refused, more than 50 members; MNIST has 70,023'):
        find_mnist(zeros_tgz(tmp_path/'many.tgz', 60, 1))

def test_real_limits_leave_room_for_mnist():
    assert archive.MAX_MEMBERS > 3*70_023 and archive.MAX_TAR_BYTES > 5*73_000_000 and MAX_IMAGE_BYTES > 1000*419

def test_bzip2_and_xz_archives_work(tiny, tmp_path):
    for mode in ('w:bz2', 'w:xz'):
        fn = tmp_path/f'mnist.{mode[2:]}'
        with tarfile.open(fn, mode) as tar: tar.add(tiny, arcname='mnist_png')
        assert load(fn).n_train == 30

# --- 2b. a killed extraction's leftovers are removed by the next run, a live one's are not ---

def test_abandoned_building_folder_is_removed(tiny, tmp_path):
    tgz = mnist_tgz(tmp_path/'mnist_png.tgz', tiny)
    (cache_dir()/'archives').mkdir(parents=True)
    dead, alive = cache_dir()/'archives'/'.building-mnist-scratch-dead0000', cache_dir()/'archives'/'.building-mnist-scratch-alive000'
    for p in (dead, alive): (p/'mnist_png').mkdir(parents=True); os.utime(p, (0, 0)) # as if killed long ago
    fd = files._lock(os.open(alive, os.O_RDONLY)) # a run still working in it
    try: load(tgz)
    finally: os.close(fd)
    assert not dead.exists() and alive.exists()

# --- 3. the decoded cache is checked, never trusted ---

def cached(tiny):
    "Load `tiny` once, and return the cache file and its contents."
    load(tiny)
    [fn] = (cache_dir()/'tensors').glob('*.pt')
    return fn, torch.load(fn, weights_only=True)

def expected(tiny): return load_mnist(tiny, cache=False, show_progress=False)

def same(a, b): return all(torch.equal(x, y) for x, y in zip(a.train + a.test, b.train + b.test))

@pytest.mark.parametrize('damage, why', [
    (lambda raw: raw['training'][3].__setitem__((0, 5, 5), 7) or raw, 'checksum does not match'),
    (lambda raw: dict(raw, training=[t.reshape(-1, 14, 56) for t in raw['training']]), 'wrong shape or type'),
    (lambda raw: dict(raw, testing=[t.float() for t in raw['testing']]), 'wrong shape or type'),
    (lambda raw: {k: v for k, v in raw.items() if k != 'testing'}, 'testing images are missing'),
    (lambda raw: dict(raw, format=1), 'written by another version'),
    (lambda raw: [raw['training'], raw['testing']], 'written by another version'),
])
def test_damaged_cache_is_rebuilt_with_a_warning(tiny, damage, why):
    fn, raw = cached(tiny)
    torch.save(damage(raw), fn)
    with pytest.warns(UserWarning, match=f'ignoring the decoded cache, .*{why}.*decoding the images again'): m = load(tiny)
    assert same(m, expected(tiny))
    assert not cache._cache_problem(torch.load(fn, weights_only=True)) # and the rebuilt cache is whole again

def test_overwritten_cache_bytes_are_noticed(tiny):
    fn, _ = cached(tiny)
    data = bytearray(fn.read_bytes())
    data[len(data)//2:len(data)//2 + 2000] = b'\x01' * 2000 # in the middle of the pixels
    fn.write_bytes(bytes(data))
    with pytest.warns(UserWarning, match='ignoring the decoded cache'): assert same(load(tiny), expected(tiny))

def test_cache_file_never_runs_code(tiny, tmp_path):
    fn, _ = cached(tiny)
    class Evil:
        def __reduce__(self): return (os.system, (f'touch {tmp_path}/pwned',))
    torch.save({'training': Evil()}, fn)
    with pytest.warns(UserWarning, match='holds objects other than tensors and plain values, never loaded.*posix.system'): load(tiny)
    assert not (tmp_path/'pwned').exists()

def test_deleted_file_in_extraction_is_noticed_at_once(tiny, tmp_path):
    tgz = mnist_tgz(tmp_path/'mnist_png.tgz', tiny)
    src = find_mnist(tgz)
    load(src)
    (src.path/'training'/'0'/'0.png').unlink() # deleted inside the cache: fastai's from_folder would train on fewer
    with pytest.warns(UserWarning, match='extracted files no longer match .*mnist_png.tgz; extracting it again'): src = find_mnist(tgz)
    assert (src.path/'training'/'0'/'0.png').is_file() and same(load(src), expected(tiny))

def test_changed_file_in_extraction_is_noticed_when_decoded(tiny, tmp_path):
    tgz = mnist_tgz(tmp_path/'mnist_png.tgz', tiny)
    src = find_mnist(tgz)
    load(src)
    write_png(src.path/'training'/'1'/'100.png', np.full((28, 28), 255, np.uint8)) # replaced: as many files as before
    shutil.rmtree(cache_dir()/'tensors') # so that the images are decoded from the extracted folder
    with pytest.warns(UserWarning, match='extracted files no longer match .*mnist_png.tgz; extracting it again'): m = load(tgz)
    assert same(m, expected(tiny))

# --- 4. a cache folder that cannot be used ---

def unusable_caches(tmp_path):
    (tmp_path/'a-file').write_text('x')
    return [tmp_path/'a-file'/'cache', Path('/proc/mnist-scratch-cache')] # under a file; on a read-only file system

@pytest.mark.parametrize('which', [0, 1], ids=['under-a-file', 'read-only'])
def test_unusable_cache_folder(tiny, tmp_path, monkeypatch, which):
    monkeypatch.setenv('MNIST_SCRATCH_CACHE', str(unusable_caches(tmp_path)[which]))
    with pytest.warns(UserWarning, match='not caching the decoded images: the cache folder .* cannot be used') as w: m = load(tiny)
    assert len(w) == 1 and same(m, expected(tiny)) # folder data still loads, with one warning
    tgz = mnist_tgz(tmp_path/'mnist_png.tgz', tiny)
    with pytest.raises(MnistDataError, match='mnist_png.tgz: .*cache folder .* cannot be used .*set MNIST_SCRATCH_CACHE'): find_mnist(tgz)
    with pytest.warns(UserWarning, match='NOT comparable'), \
         pytest.raises(MnistDataError, match='offline sample is written into the cache, and the cache folder .* cannot be used'):
        find_mnist(sample=True)

def test_full_disk(tiny, tmp_path, monkeypatch):
    real = os.fdopen
    class Full(io.RawIOBase):
        def __init__(self, fd): self.f = real(fd, 'wb')
        def writable(self): return True
        def write(self, b): raise OSError(errno.ENOSPC, 'No space left on device')
        def close(self): self.f.close(); super().close()
    monkeypatch.setattr(files.os, 'fdopen', lambda fd, mode='r', *a, **k: Full(fd) if 'w' in mode else real(fd, mode, *a, **k))
    with pytest.warns(UserWarning, match=r'cannot be used \(No space left on device\)') as w: m = load(tiny)
    assert len(w) == 1 and same(m, expected(tiny))
    assert not [p for p in cache_dir().rglob('*') if p.is_file()] # no empty or partial file left behind
    tgz = mnist_tgz(tmp_path/'mnist_png.tgz', tiny)
    with pytest.raises(MnistDataError, match=r'cannot be extracted: the cache folder .* \(No space left on device\)'): find_mnist(tgz)
    assert archives() == []

# --- 5. and 6. folder entries that are odd, or that would hang ---

@pytest.mark.writes_tiny
def test_broken_links_and_odd_names_that_are_not_images_are_ignored(tiny):
    folder = tiny/'training'/'4'
    (folder/'.DS_Store').symlink_to(folder/'nowhere')
    (folder/'loop.txt').symlink_to(folder/'loop.txt')
    (folder/os.fsdecode(b'caf\xe9.txt')).write_text('not UTF-8')
    assert same(load(tiny), expected(tiny)) and load(tiny).n_train == 30

@pytest.mark.parametrize('make, msg', [
    (lambda fn: fn.symlink_to(fn.parent/'nowhere.png'), 'cannot be read \\(No such file or directory\\)'),
    (lambda fn: fn.symlink_to(fn), 'cannot be read \\(Too many levels of symbolic links\\)'),
    (lambda fn: os.mkfifo(fn), 'is a FIFO, not a PNG image'),
])
@pytest.mark.writes_tiny
def test_png_entries_that_are_not_files(tiny, make, msg):
    fn = tiny/'training'/'6'/'x.png'
    make(fn)
    with pytest.raises(MnistDataError, match=f'training/6/x.png: {msg}'): load(tiny)

@pytest.mark.writes_tiny
def test_non_utf8_image_name(tiny):
    fn = tiny/'training'/'2'/os.fsdecode(b'\xff.png')
    write_png(fn, digit_image(2, 7))
    assert load(tiny).n_train == 31
    fn.write_bytes(b'broken')
    with pytest.raises(MnistDataError, match=r'training/2/\\xff.png: not a readable PNG'): load(tiny, refresh=True)

def png_chunk(kind, data): return len(data).to_bytes(4, 'big') + kind + data + zlib.crc32(kind + data).to_bytes(4, 'big')

def test_decompression_bomb_png(tmp_path):
    "A header that promises 60000x60000 pixels is refused from the header, before anything is allocated."
    fn = tmp_path/'bomb.png'
    ihdr = (60000).to_bytes(4, 'big')*2 + bytes([8, 0, 0, 0, 0])
    fn.write_bytes(images.PNG_SIGNATURE + png_chunk(b'IHDR', ihdr) + png_chunk(b'IDAT', zlib.compress(bytes(60001)*100)) + png_chunk(b'IEND', b''))
    with pytest.raises(MnistDataError, match='bomb.png: image is 60000x60000, expected 28x28'): read_digit(fn)

@pytest.mark.parametrize('fmt, name', [('JPEG', 'JPEG'), ('BMP', 'BMP'), ('GIF', 'GIF'), ('TIFF', 'TIFF')])
def test_other_formats_named_png_are_refused(tmp_path, fmt, name):
    fn = tmp_path/'x.png'
    Image.fromarray(digit_image(3)).save(fn, format=fmt)
    with pytest.raises(MnistDataError, match=f'x.png: a {name} image named .png, expected a PNG'): read_digit(fn)

def test_gray_png_with_transparency_is_refused(tmp_path):
    fn = tmp_path/'x.png'
    Image.fromarray(digit_image(3)).save(fn, transparency=0)
    with pytest.raises(MnistDataError, match='x.png: image has transparency'): read_digit(fn)

def test_huge_file_named_png(tmp_path):
    fn = tmp_path/'x.png'
    fn.write_bytes(images.PNG_SIGNATURE + bytes(MAX_IMAGE_BYTES + 10))
    with pytest.raises(MnistDataError, match='x.png: more than 1,048,576 bytes'): read_digit(fn)

# --- the command line: arguments, hangs, messages, results ---


@pytest.mark.parametrize('data, msg', [('/dev/zero', 'is a device, not an archive'), ('fifo', 'is a FIFO, not an archive')])
def test_data_that_would_hang(tmp_path, capsys, data, msg):
    if data == 'fifo': os.mkfifo(data := tmp_path/'mnist_png.tgz')
    assert cli_code('reproduce', '--only', 'baseline-mse', '--data', data, '--out', tmp_path/'out') == 1
    err = capsys.readouterr().err
    assert msg in err and 'Traceback' not in err

@pytest.mark.writes_tiny
def test_escape_codes_in_names_are_printed_safely(tiny, tmp_path, capsys):
    fn = tiny/'training'/'5'/'\x1b[2J\x07.png'
    fn.write_bytes(b'not a png')
    assert cli_code('reproduce', '--only', 'baseline-mse', '--data', tiny, '--out', tmp_path/'out') == 1
    std = capsys.readouterr()
    assert '\x1b' not in std.err + std.out and '\x07' not in std.err + std.out
    assert '\\x1b[2J\\x07.png: not a readable PNG' in std.err
    assert printable('a\x1bb\udcffc\n') == 'a\\x1bb\\xffc\\n'

def test_results_are_replaced_whole_or_kept(tiny, tmp_path, monkeypatch, capsys):
    out = tmp_path/'out'
    assert main(['reproduce', '--only', 'baseline-mse', '--data', str(tiny), '--out', str(out)]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    def full(fd, *a, **k): raise OSError(errno.ENOSPC, 'No space left on device')
    monkeypatch.setattr(files.os, 'fsync', full)
    assert main(['reproduce', '--only', 'baseline-mae', '--data', str(tiny), '--out', str(out)]) == 1
    assert f'mnist-scratch: error: {out}: No space left on device; earlier results there are unchanged' in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before # nothing emptied, no temporary file left

# --- 11. and 12. the cache: what it holds, refreshing, replacing, clearing ---

def png_of(a):
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format='PNG')
    return buf.getvalue()

def test_refresh_reads_replaced_images(tiny):
    load(tiny)
    fn = tiny/'training'/'0'/'0.png'
    st = fn.stat()
    other = next(png_of(digit_image(0, i)) for i in range(1, 50) if len(png_of(digit_image(0, i))) == st.st_size)
    fn.write_bytes(other) # another image of the same size, its time set back: not noticed
    os.utime(fn, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert load(tiny).train[0][0, 0, 4] == 200/255 # the documented trade: the cache is served
    assert load(tiny, refresh=True).train[0][0, 0, 4] > 200/255 # --refresh reads it again
    assert len(list((cache_dir()/'tensors').glob('*.pt'))) == 1

@pytest.mark.writes_tiny
def test_newer_cache_entries_replace_older_ones(tiny, tmp_path):
    load(tiny)
    write_png(tiny/'training'/'0'/'999.png', digit_image(0, 9))
    load(tiny)
    assert len(list((cache_dir()/'tensors').glob('*.pt'))) == 1 # the folder's older cache is gone
    other = make_tiny_mnist(tmp_path/'other')
    load(other)
    assert len(list((cache_dir()/'tensors').glob('*.pt'))) == 2 # another folder keeps its own
    tgz = mnist_tgz(tmp_path/'mnist_png.tgz', tiny)
    load(tgz)
    mnist_tgz(tgz, other) # the same archive file, new contents
    assert load(tgz).n_train == 30
    assert len(archives()) == 1 and len(list((cache_dir()/'tensors').glob('*.pt'))) == 3

def test_cache_command_lists_and_clears_only_its_own(tiny, tmp_path, capsys):
    tgz = mnist_tgz(tmp_path/'mnist_png.tgz', tiny)
    load(tgz)
    kinds = sorted(e['kind'] for e in cache_entries())
    assert kinds == ['decoded images', 'extracted archive'] and all(e['bytes'] > 0 for e in cache_entries())
    assert {e['source'] for e in cache_entries()} == {str(tgz.resolve())}
    (cache_dir()/'notes.txt').write_text('mine') # a user's own file in the cache folder is not ours to remove
    assert main(['cache']) == 0
    out = capsys.readouterr().out
    assert 'decoded images' in out and 'extracted archive' in out and 'in all' in out
    freed = sum(e['bytes'] for e in cache_entries())
    assert main(['cache', '--clear']) == 0 and f'removed {freed/1e6:.1f} MB' in capsys.readouterr().out
    assert cache_entries() == [] and sorted(p.name for p in cache_dir().iterdir()) == ['notes.txt']
    assert load(tgz).n_train == 30 # and everything is rebuilt on the next load

def test_a_fresh_extraction_is_not_checked_again(tiny, tmp_path, monkeypatch):
    "Files written moments ago by this very load are decoded without reading them all once more to check them."
    tgz = mnist_tgz(tmp_path/'mnist_png.tgz', tiny)
    monkeypatch.setattr(archive, 'files_digest', lambda folder: pytest.fail('a fresh extraction was checked again'))
    assert load(tgz).n_train == 30

def test_a_path_and_the_sample_exclude_each_other(tiny, no_download):
    "Asked for a path and the sample at once, the library refuses, naming the path, and downloads nothing."
    with pytest.raises(MnistDataError, match=f'{tiny}: a path and the sample exclude each other'): find_mnist(tiny, sample=True)
    assert no_download == []
