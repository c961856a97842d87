"""Hostile and unlucky caches, tensor files and settings (issue 24): links out of the cache, FIFOs, tensor files that
balloon, folders that are not the project's, temporaries that are not its own, a garbled fastai config, `~nosuchuser`.
Each is refused or left alone at once, in one line, and nothing outside what the project wrote is touched."""
import io, json, os, re, stat, subprocess, sys, time, zipfile, zlib, pytest, torch
from pathlib import Path
from conftest import make_tiny_mnist
from test_hostile import load, mnist_tgz, cached, expected, same
from mnist_scratch import cache, files
from mnist_scratch.files import MnistDataError, load_tensor_file, write_atomic
from mnist_scratch.cache import MANIFEST, cache_dir, cache_entries
from mnist_scratch.sources import find_mnist
from mnist_scratch.cli import main

pytestmark = pytest.mark.timeout(60) # a regression that hangs fails instead

def snapshot(folder):
    "Every file, folder and link under `folder`: its type, and the bytes of a file or the target of a link (never followed)."
    out = {}
    for root, dirs, names in os.walk(folder):
        for p in (Path(root)/n for n in dirs + names):
            kind = stat.S_IFMT(p.lstat().st_mode)
            out[p] = (kind, os.readlink(p) if p.is_symlink() else p.read_bytes() if stat.S_ISREG(kind) else None)
    return out

# --- 1. the cache never follows a link out of itself: not to list, not to clear, not to write ---

def ours_moved_out(tiny, tmp_path):
    "A real decoded cache and extraction of the project, moved to a folder outside the cache: the best forgery there is."
    load(mnist_tgz(tmp_path/'mnist_png.tgz', tiny))
    outside = tmp_path/'outside'
    outside.mkdir()
    for name in ('tensors', 'archives'): (cache_dir()/name).rename(outside/name)
    (outside/'tensors'/'mine.pt').write_bytes(b'a file of the user')
    return outside

@pytest.mark.timeout(30)
@pytest.mark.parametrize('linked', ['folders', 'entries'])
def test_cache_never_follows_links_out_of_itself(tiny, tmp_path, capsys, linked):
    outside = ours_moved_out(tiny, tmp_path)
    if linked == 'folders': # tensors/ and archives/ are links to folders elsewhere
        for name in ('tensors', 'archives'): (cache_dir()/name).symlink_to(outside/name)
    else: # real folders, whose entries are links to files and folders elsewhere
        for name in ('tensors', 'archives'):
            (cache_dir()/name).mkdir()
            for p in (outside/name).iterdir(): (cache_dir()/name/p.name).symlink_to(p)
    (cache_dir()/'mnist_sample').symlink_to(outside/'archives') # and a sample that is a link
    before, links = snapshot(outside), snapshot(cache_dir())
    assert cache_entries() == []
    assert main(['cache']) == 0 and '(empty)' in capsys.readouterr().out
    assert main(['cache', '--clear']) == 0 and 'removed 0.0 MB' in capsys.readouterr().out
    assert snapshot(outside) == before and snapshot(cache_dir()) == links # nothing deleted there, nor the links
    if linked == 'folders': # and nothing is written through a link either
        with pytest.warns(UserWarning, match=r"not caching the decoded images: .*its tensors/ is a link or not a folder"):
            load(make_tiny_mnist(tmp_path/'other'))
        with pytest.raises(MnistDataError, match=r'other.tgz: .*its archives/ is a link or not a folder'):
            find_mnist(mnist_tgz(tmp_path/'other.tgz', tiny))
        assert snapshot(outside) == before

# --- 2. a FIFO anywhere in the cache is refused or skipped at once ---

@pytest.mark.timeout(20)
def test_fifos_in_the_cache_never_block(tiny, tmp_path, capsys):
    tgz = mnist_tgz(tmp_path/'mnist_png.tgz', tiny)
    load(tgz)
    tensors, [extracted] = cache_dir()/'tensors', list((cache_dir()/'archives').iterdir())
    os.mkfifo(tensors/f"{'0'*16}-{'1'*32}.pt") # named as the project names its caches
    start = time.perf_counter()
    assert main(['cache']) == 0 and time.perf_counter() - start < 5
    assert sorted(e['kind'] for e in cache_entries()) == ['decoded images', 'extracted archive']
    (extracted/MANIFEST).unlink()
    os.mkfifo(extracted/MANIFEST)
    with pytest.warns(UserWarning, match='extracted files no longer match .*mnist_png.tgz; extracting it again'): m = load(tgz)
    assert same(m, expected(tiny)) and (extracted/MANIFEST).is_file()
    assert main(['cache', '--clear']) == 0 and [p.name for p in tensors.iterdir()] == [f"{'0'*16}-{'1'*32}.pt"] # not ours

@pytest.mark.timeout(20)
def test_fifo_where_the_decoded_cache_is(tiny):
    fn, _ = cached(tiny)
    fn.unlink()
    os.mkfifo(fn)
    with pytest.warns(UserWarning, match=r'\.pt: is a FIFO, not a decoded cache; ignoring the decoded cache, decoding the images again'):
        m = load(tiny)
    assert same(m, expected(tiny)) and stat.S_ISREG(fn.lstat().st_mode) # replaced by a cache file again

# --- 3. load_tensor_file: the one way to read what torch.save wrote ---

def zip_of(entries):
    "A zip of `(name, bytes as stored, method, size unpacked, CRC-32[, size stored])` entries; unlike `zipfile`, any sizes."
    out, central = io.BytesIO(), b''
    for name, data, method, size, crc, *packed in entries:
        n, at, sizes = name.encode(), out.tell(), b''.join(v.to_bytes(4, 'little') for v in (crc, *(packed or [len(data)]), size))
        out.write(b'PK\x03\x04' + (20).to_bytes(2, 'little') + bytes(2) + method.to_bytes(2, 'little') + bytes(4)
                  + sizes + len(n).to_bytes(2, 'little') + bytes(2) + n + data)
        central += (b'PK\x01\x02' + (20).to_bytes(2, 'little')*2 + bytes(2) + method.to_bytes(2, 'little') + bytes(4)
                    + sizes + len(n).to_bytes(2, 'little')
                    + bytes(8) + bytes(4) + at.to_bytes(4, 'little') + n)
    at = out.tell()
    k = len(entries).to_bytes(2, 'little')
    out.write(central + b'PK\x05\x06' + bytes(4) + k + k + len(central).to_bytes(4, 'little') + at.to_bytes(4, 'little') + bytes(2))
    return out.getvalue()

def crc32_of_zeros(n):
    """`zlib.crc32(bytes(n))` without reading `n` bytes (for 1 GiB that took a fifth of a second): appending a zero bit is
    linear over GF(2), so appending 2**k of them is a 32x32 bit matrix, squared from the one before (zlib's crc32_combine)."""
    def times(m, v): # the matrix `m` (32 columns) times the vector `v`
        r, i = 0, 0
        while v:
            if v & 1: r ^= m[i]
            v, i = v >> 1, i + 1
        return r
    one_bit = [0xEDB88320] + [1 << i for i in range(31)] # the reflected CRC-32 polynomial, then a shift by one bit
    crc, bits = 0xFFFFFFFF, 8*n
    while bits: # the register starts at all ones, zeros shift through it, and the result is complemented, as zlib does
        if bits & 1: crc = times(one_bit, crc)
        one_bit, bits = [times(one_bit, c) for c in one_bit], bits >> 1
    return crc ^ 0xFFFFFFFF

def test_crc32_of_zeros_is_zlibs():
    assert [crc32_of_zeros(n) for n in (0, 1, 3, 1000, 3 << 20)] == [zlib.crc32(bytes(n)) for n in (0, 1, 3, 1000, 3 << 20)]

def deflated_zeros(n, chunk=1 << 20):
    "`n` zero bytes deflated, in about n/1000 bytes and a fraction of a second: one flushed block, repeated."
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = c.compress(bytes(chunk)) + c.flush(zlib.Z_FULL_FLUSH) # no reference back past the flush: it can repeat
    return block * (n // chunk) + c.flush(), zipfile.ZIP_DEFLATED, n, crc32_of_zeros(n // chunk * chunk)

def gigabyte_storage_file(fn):
    "A 1 MB file whose (784, 10) weight sits on a 1 GiB storage, deflated: torch.load alone would unpack all of it."
    buf = io.BytesIO()
    torch.save(dict(w=torch.zeros(70_000)[:7840].view(784, 10)), buf)
    entries = []
    with zipfile.ZipFile(buf) as z:
        for i in z.infolist():
            data = z.read(i)
            if i.filename.endswith('data.pkl'): # the storage's length in the pickle: 70,000 floats, now 2**28 (1 GiB)
                assert data.count(b'J' + (70_000).to_bytes(4, 'little')) == 1
                data = data.replace(b'J' + (70_000).to_bytes(4, 'little'), b'J' + (1 << 28).to_bytes(4, 'little'))
            entries.append((i.filename, *deflated_zeros(1 << 30)) if i.filename.endswith('data/0')
                           else (i.filename, data, zipfile.ZIP_STORED, len(data), zlib.crc32(data)))
    fn.write_bytes(zip_of(entries))
    assert fn.stat().st_size < 1_100_000
    return fn

def stored_size_lie(fn):
    "A 2 KB file whose zip directory says that an entry stored in it has 2 GiB."
    torch.save(dict(w=torch.ones(3)), fn)
    with zipfile.ZipFile(fn) as z: entries = [(i.filename, z.read(i)) for i in z.infolist()]
    lie = lambda n, d: (1 << 31) if n.endswith('data/0') else len(d)
    fn.write_bytes(zip_of([(n, d, zipfile.ZIP_STORED, lie(n, d), zlib.crc32(d), lie(n, d)) for n, d in entries]))

def saved(obj): return lambda fn: torch.save(obj, fn)

class Evil:
    def __reduce__(self): return (os.system, ('touch pwned',))

def test_load_tensor_file_reads_what_torch_save_wrote(tmp_path):
    base = torch.arange(60, dtype=torch.uint8).reshape(15, 4)
    obj = dict(w=torch.nn.Parameter(torch.randn(3, 2, generator=torch.Generator().manual_seed(0))), parts=list(base.split([5, 10])),
               info=dict(id='mlp', accuracy=0.97, shape=(784, 10)), n=torch.tensor(3))
    torch.save(obj, tmp_path/'m.pt')
    got = load_tensor_file(tmp_path/'m.pt', 'a model file', 1 << 20)
    assert torch.equal(got['w'], obj['w']) and all(torch.equal(a, b) for a, b in zip(got['parts'], obj['parts']))
    assert got['info'] == obj['info'] and got['n'] == 3
    assert got['parts'][1].untyped_storage().data_ptr() == got['parts'][0].untyped_storage().data_ptr() # views of one storage
    with pytest.raises(FileNotFoundError): load_tensor_file(tmp_path/'none.pt', 'a model file', 1 << 20) # for the caller to word

def test_a_transposed_weight_is_dense_and_loads(tmp_path):
    "Training keeps the linear weights column by column (a transposed view): dense, so it loads as saved, bit for bit."
    w = torch.randn(10, 784, generator=torch.Generator().manual_seed(0)).t()
    assert not w.is_contiguous()
    torch.save(dict(w=w), tmp_path/'w.pt')
    got = load_tensor_file(tmp_path/'w.pt', 'a model file', 1 << 20)['w']
    assert got.stride() == w.stride() and torch.equal(got, w)

@pytest.mark.timeout(10)
@pytest.mark.parametrize('make, msg', [
    (saved(dict(w=torch.zeros(1).expand(784, 5_000_000))), # 2 KB, or 16 GB as soon as anything computes on it
     r'not a model file \(a tensor of shape \(784, 5000000\) has strides \(0, 0\): its elements overlap or leave gaps\)$'),
    (saved(dict(w=torch.zeros(100).as_strided((50, 50), (1, 1)))), r'not a model file \(a tensor of shape \(50, 50\) has strides \(1, 1\): its elements overlap or leave gaps\)$'),
    (gigabyte_storage_file, r'not a model file \(its entry archive/data/0 is compressed, which torch\.save never does\)$'),
    (stored_size_lie, r': unpacks to 2,147,48\d,\d{3} bytes, more than any model file \(at most 2,097,152\)$'),
    (saved(dict(w=torch.ones(600_000))), r': 2,40\d,\d{3} bytes, more than any model file \(at most 2,097,152\)$'),
    (saved(dict(info='x' * 1_100_000)), r'not a model file \(its structure, m/data\.pkl, has 1,100,\d{3} bytes; at most 1,048,576\)$'),
    (lambda fn: fn.write_bytes(b'garbage' * 100), r'not a model file \(not a file that torch\.save wrote: File is not a zip file\)$'),
    (saved(dict(w=Evil())), r'not a model file \(it holds objects other than tensors and plain values, never loaded: .*GLOBAL posix\.system'),
    (saved(dict(w=torch.eye(3).to_sparse())), r'not a model file \(a torch\.sparse_coo tensor on cpu, not a plain one\)$'),
    (saved(dict(w=torch.empty(784, 5_000_000, device='meta'))), r'not a model file \(a torch\.strided tensor on meta, not a plain one\)$'),
    (os.mkfifo, r': is a FIFO, not a model file$'),
    (lambda fn: fn.symlink_to('/dev/zero'), r': is a device, not a model file$'),
    (os.mkdir, r': is a folder, not a model file$'),
], ids=['stride-0', 'overlapping', 'compressed-1GiB', 'size-lie', 'too-large', 'huge-pickle', 'not-a-zip', 'code', 'sparse',
        'meta', 'fifo', 'device', 'folder'])
def test_hostile_tensor_files_are_refused_at_once(tmp_path, monkeypatch, make, msg):
    monkeypatch.chdir(tmp_path) # where `Evil` would have written
    fn = tmp_path/'m.pt'
    make(fn)
    start = time.perf_counter()
    with pytest.raises(MnistDataError, match=f'^{re.escape(str(fn))}' + (msg if msg.startswith(':') else f': {msg}')):
        load_tensor_file(fn, 'a model file', 2 << 20) # a 1 MB file of 1 GiB fits in it: the bytes that unpack do not
    assert time.perf_counter() - start < 1 and not (tmp_path/'pwned').exists()

def test_unreadable_tensor_file(tmp_path, monkeypatch):
    fn = tmp_path/'m.pt'
    torch.save(dict(w=torch.ones(3)), fn)
    real_open = os.open
    def deny(f, *a, **k):
        if Path(f) == fn: raise PermissionError(13, 'Permission denied', str(f))
        return real_open(f, *a, **k)
    monkeypatch.setattr(files.os, 'open', deny) # root reads any file, so a chmod cannot show this
    with pytest.raises(MnistDataError, match=f'^{re.escape(str(fn))}: cannot be read \\(Permission denied\\): check its permissions$'):
        load_tensor_file(fn, 'a model file', 1 << 20)

@pytest.mark.timeout(20)
def test_stride0_decoded_cache_is_refused_in_milliseconds(tiny):
    "The 2 KB cache whose tensors claim 200,000 images each (3 GB, 51 s to check before) is refused unread, then rebuilt."
    fn, raw = cached(tiny)
    huge = [torch.zeros(1, 1, 1, dtype=torch.uint8).expand(200_000, 28, 28) for _ in range(10)]
    torch.save(dict(raw, training=huge, testing=huge), fn)
    assert fn.stat().st_size < 10_000
    start = time.perf_counter()
    with pytest.warns(UserWarning, match=r'has strides \(0, 0, 0\): its elements overlap or leave gaps\); ignoring the decoded cache'):
        assert cache.read_cache(fn) is None
    assert time.perf_counter() - start < 0.5
    with pytest.warns(UserWarning, match='ignoring the decoded cache'): m = load(tiny)
    assert same(m, expected(tiny)) and cache.read_cache(fn) is not None # decoded again, and cached whole
    assert cache.MAX_CACHE_BYTES > 3 * 54_883_045 # the full MNIST's cache, 55 MB, is read, and room to spare

@pytest.mark.slow
@pytest.mark.timeout(120)
def test_hostile_tensor_files_take_little_memory(tmp_path):
    "Peak memory while refusing the compressed 1 GiB storage and the stride-0 files, in a fresh process."
    files = [gigabyte_storage_file(tmp_path/'gib.pt'), tmp_path/'stride0.pt', tmp_path/'stride0-cache.pt']
    torch.save(dict(w=torch.zeros(1).expand(784, 5_000_000)), files[1])
    torch.save(dict(training=[torch.zeros(1, 1, 1, dtype=torch.uint8).expand(5_000_000, 28, 28)] * 10), files[2])
    torch.save(dict(w=torch.ones(784, 10)), tmp_path/'fine.pt')
    code = ("import resource, sys; from mnist_scratch.files import load_tensor_file, MnistDataError\n"
            "peak = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024\n"
            "load_tensor_file(sys.argv[1], 'a model file', 60_000_000); before = peak()\n"
            "for fn in sys.argv[2:]:\n"
            "    try: load_tensor_file(fn, 'a model file', 60_000_000); sys.exit(f'{fn} was accepted')\n"
            "    except MnistDataError: pass\n"
            "print(peak() - before)")
    r = subprocess.run([sys.executable, '-c', code, tmp_path/'fine.pt', *files], capture_output=True, text=True, timeout=100)
    assert r.returncode == 0, r.stderr[-2000:]
    assert int(r.stdout) < 50 # MB more than reading a small model file took; torch.load alone takes over 1,000

# --- 4. what the project wrote carries its mark; folders that merely have the right names are left alone ---

def users_folder(root):
    "A folder of the user's that happens to hold tensors/, archives/ and mnist_sample/, as MNIST_SCRATCH_CACHE may name."
    (root/'tensors').mkdir(parents=True)
    torch.save(dict(w=torch.ones(3)), root/'tensors'/'model.pt')
    torch.save(dict(format=1, w=torch.ones(3)), root/'tensors'/f"{'ab'*8}-{'cd'*16}.pt") # named like a cache, not one
    (root/'tensors'/'.writing-draft.md').write_text('a draft') # named like a temporary, not one
    notes = root/'archives'/'notes-0123456789abcdef'
    notes.mkdir(parents=True)
    (notes/MANIFEST).write_text(json.dumps(dict(archive='/x.tgz', sha256='f'*64, kind='extracted archive'))) # checksum not in the name
    (root/'archives'/'.building-notes').mkdir()
    make_tiny_mnist(root/'mnist_sample', n_train=1, n_test=1)
    for p in root.rglob('*'): os.utime(p, (0, 0)) # old enough to pass for what a killed run left
    return root

@pytest.mark.timeout(30)
def test_users_own_folders_in_the_cache_are_left_alone(tiny, tmp_path, monkeypatch, capsys):
    mine = users_folder(tmp_path/'work')
    monkeypatch.setenv('MNIST_SCRATCH_CACHE', str(mine))
    before = snapshot(mine)
    assert cache_entries() == [] and main(['cache']) == 0 and '(empty)' in capsys.readouterr().out
    assert main(['cache', '--clear']) == 0 and snapshot(mine) == before
    load(mnist_tgz(tmp_path/'mnist_png.tgz', tiny)) # the project's own entries, beside the user's
    assert sorted(e['kind'] for e in cache_entries()) == ['decoded images', 'extracted archive']
    assert main(['cache', '--clear']) == 0 and snapshot(mine) == before # exactly the user's files are left

def test_a_users_mnist_sample_is_neither_used_nor_replaced(tmp_path, monkeypatch):
    mine = users_folder(tmp_path/'work')
    monkeypatch.setenv('MNIST_SCRATCH_CACHE', str(mine))
    before = snapshot(mine)
    for refresh in (False, True):
        with pytest.warns(UserWarning, match='NOT comparable'), pytest.raises(MnistDataError, match=(
                f'^{re.escape(str(mine))}/mnist_sample: the offline sample goes here, but this folder has no mark of this project, so it is left alone: '
                'move it away .* or set MNIST_SCRATCH_CACHE to another folder$')):
            find_mnist(sample=True, refresh=refresh)
    assert snapshot(mine) == before

@pytest.mark.slow
def test_the_offline_sample_carries_the_mark():
    with pytest.warns(UserWarning, match='NOT comparable'): src = find_mnist(sample=True)
    assert [e['kind'] for e in cache_entries()] == ['offline sample'] and cache._read_manifest(src.path)['kind'] == 'offline sample'
    cache.clear_cache()
    assert not src.path.exists()

# --- 5. temporaries: only the project's own leftovers are cleaned, beside the results too ---

def test_write_atomic_removes_only_its_own_leftovers(tmp_path):
    out = tmp_path/'results'
    (out/'.building-notes').mkdir(parents=True)
    (out/'.building-notes'/'n.txt').write_text('notes')
    (out/'.writing-draft.md').write_text('a draft')
    (out/'.writing-mnist-scratch-k1ll3d00').write_bytes(b'half a file') # what a killed run of the project leaves
    (out/'.building-mnist-scratch-k1ll3d00').mkdir()
    (tmp_path/'victim').write_text('untouched')
    (out/'.writing-mnist-scratch-l1nk0000').symlink_to(tmp_path/'victim') # named like one, but a link
    for p in out.iterdir(): os.utime(p, (0, 0), follow_symlinks=False)
    write_atomic(out/'results.json', b'{}')
    assert sorted(p.name for p in out.iterdir()) == ['.building-notes', '.writing-draft.md', '.writing-mnist-scratch-l1nk0000', 'results.json']
    assert (out/'.building-notes'/'n.txt').read_text() == 'notes' and (tmp_path/'victim').read_text() == 'untouched'

# --- 6. a garbled fastai config.ini: a warning naming it, and the data found elsewhere ---

@pytest.mark.timeout(10)
@pytest.mark.parametrize('content, msg', [
    (b'data = /somewhere\n', r'not a config file that fastai can read \(File contains no section headers\.\)'),
    (b'[DEFAULT]\ndata = /caf\xe9\n', r'not UTF-8 text \(byte 0xe9 at position 21\)'),
    (b'[DEFAULT]\ndata = /100%\n', r"not a config file that fastai can read \('%' must be followed by '%' or '\(', found: '%'\)"),
    (b'[DEFAULT]\ndata = ~nosuchuser/data\n', r'data: ~nosuchuser/data: ~nosuchuser is the home folder of a user that this machine does not have: check the path'),
    ('fifo', "is a FIFO, not fastai's config.ini"),
], ids=['no-section', 'not-utf8', 'percent', 'no-such-user', 'fifo'])
def test_a_garbled_fastai_config_is_ignored_with_a_warning(tmp_path, no_download, content, msg):
    home = tmp_path/'fastai' # FASTAI_HOME, as the `isolated` fixture sets it
    home.mkdir()
    os.mkfifo(home/'config.ini') if content == 'fifo' else (home/'config.ini').write_bytes(content)
    make_tiny_mnist(home/'data'/'mnist_png') # fastai's default folder holds the data
    with pytest.warns(UserWarning, match=f"^{re.escape(str(home))}/config.ini: {msg}; ignoring it and looking for fastai's data in {re.escape(str(home))}/data$") as w:
        src = find_mnist()
    assert (src.source, src.path) == ('fastai', home/'data'/'mnist_png') and len(w) == 1 and not no_download

# --- 7. `~nosuchuser` wherever a path is given ---

@pytest.mark.parametrize('where', ['path', 'MNIST_SCRATCH_DATA', 'MNIST_SCRATCH_CACHE', 'FASTAI_HOME'])
def test_home_of_a_user_that_does_not_exist(tiny, monkeypatch, capsys, no_download, where):
    value = '~nosuchuser/mnist'
    if where != 'path': monkeypatch.setenv(where, value)
    line = f"{'' if where == 'path' else where + ': '}~nosuchuser/mnist: ~nosuchuser is the home folder of a user that this machine does not have: check the path"
    with pytest.raises(MnistDataError, match=f'^{line}$'): load(dict(path=value, MNIST_SCRATCH_CACHE=tiny).get(where))
    if where == 'MNIST_SCRATCH_CACHE': # and the command says it in one line
        assert main(['cache']) == 1 and capsys.readouterr().err == f'mnist-scratch: error: {line}\n'
