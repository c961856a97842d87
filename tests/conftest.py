import gc
gc.disable() # while PyTorch and the rest are imported (see below): 0.3 to 0.5 s of CPU fewer
import ast, contextlib, functools, http.server, importlib, io, itertools, os, random, re, shutil, subprocess, sys, threading, types, warnings, pytest
from pathlib import Path

# The environment as the user or CI set it (the real data, the cache), captured before any test changes it.
ORIGINAL_ENV = dict(os.environ)
REAL_DATA = ORIGINAL_ENV.get('MNIST_SCRATCH_DATA')
ROOT = Path(__file__).parent.parent

# PyTorch, NumPy and PIL are imported in the functions that use them, and PyTorch first in `pytest_sessionstart`: under
# pytest-xdist (`make test-fast` runs `-n 2`) the controlling process runs no test, and importing PyTorch there (2 s of
# CPU) would only delay the start of the two processes that do.
def pytest_sessionstart(session):
    if session.config.pluginmanager.has_plugin('dsession'): # pytest-xdist's controller: nothing of the below is needed
        gc.enable()
        return
    import torch
    # The tests' tensors are tiny: one thread computes them as fast as two, and with two a second process using the cores
    # (a notebook, another test run, the other xdist worker) made PyTorch's threads wait on each other, up to a hundredfold
    # (0.08 s became 32 s).
    torch.set_num_threads(1)
    # After importing PyTorch (and later the library, the test modules, torch._dynamo) the heap holds 300,000 objects that
    # live until the end: Python's collector walked them all on each full collection, and once more at exit, 2 to 3 s of
    # CPU in `make test-fast`. Frozen, they are left out of every collection (what the tests make is still collected as
    # usual). Collection stays off until the test modules are imported: nothing is garbage yet, each pass only cost time.
    gc.freeze()

def pytest_sessionfinish(session):
    close_widgets()
    # On its way out Python collects garbage once more, through every object: 1 s with PyTorch and torch._dynamo loaded,
    # 0.2 s with them frozen. `make test-fast` waits for both of its processes to end.
    gc.freeze()

def close_widgets():
    "Close the widgets that tests made (the drawing pad), so that a run ends without \"Exception ignored in Widget.__del__\"."
    # they close themselves when Python deletes them at exit, too late to import what closing needs
    widgets = sys.modules.get('ipywidgets')
    if widgets is None: return
    for w in list(widgets.widgets.widget._instances.values()):
        try: w.close()
        except KeyError: w.comm = None # a test's own comm manager, gone with the test, held it: nothing left to close

# What the installed `mnist-scratch` script runs, found through its entry point (wherever pip put the script).
ENTRY = ("import sys; from importlib.metadata import entry_points; "
         "(ep,) = entry_points(group='console_scripts', name='mnist-scratch'); sys.exit(ep.load()())")

def run_cli(*args, timeout=300):
    "Run the installed `mnist-scratch` command as a user would, through its entry point, in a process of its own."
    return subprocess.run([sys.executable, '-c', ENTRY, *map(str, args)], capture_output=True, text=True,
                          env=os.environ.copy(), timeout=timeout)

def cli_code(*args):
    "Run `mnist-scratch ARGS` in this process and return its exit code, as `sys.exit(main())` would give it (capsys has the output)."
    from mnist_scratch.cli import main
    try: return main([str(a) for a in args])
    except SystemExit as e: return e.code # argparse: usage errors (2) and --help (0)

class Answers(http.server.BaseHTTPRequestHandler):
    "Answers each GET from the server's `routes` (path -> (status, body, whether to send Content-Length)), else 404."
    def do_GET(self):
        self.server.asked.append(self.path)
        status, body, length = self.server.routes.get(self.path, (404, b'not found', True))
        self.send_response(status)
        if length: self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        try: self.wfile.write(body)
        except OSError: pass # the client stopped reading (over a cap): expected
    def log_message(self, *args): pass

@contextlib.contextmanager
def local_server(routes):
    "A web server on this machine in GitHub's place, answering `routes` until the block ends: its `url` and the paths `asked`."
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Answers)
    server.routes, server.asked = routes, []
    # it looks for `shutdown` every 10 ms: the default half second was most of test_records' time
    threading.Thread(target=server.serve_forever, kwargs=dict(poll_interval=0.01), daemon=True).start()
    try: yield types.SimpleNamespace(url=f'http://127.0.0.1:{server.server_port}', asked=server.asked)
    finally: server.shutdown(); server.server_close()

def digit_image(d, i=0):
    "A 28x28 uint8 image for digit `d`: a bright bar at rows 2d..2d+2, with a little noise from `i`."
    import numpy as np
    a = np.zeros((28, 28), np.uint8)
    a[2*d:2*d+3, 4:24] = 200 + i%50
    return a

def write_png(fn, a, mode='L'):
    from PIL import Image
    fn.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(a, mode=mode).save(fn)

@functools.cache
def digit_png(d, i):
    "The PNG file of `digit_image(d, i)`, encoded once per session: most tests write the same few images."
    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(digit_image(d, i), mode='L').save(buf, format='PNG')
    return buf.getvalue()

def make_tiny_mnist(root, n_train=3, n_test=2):
    "An MNIST-shaped folder of synthetic digits that the pixel-mean baseline classifies perfectly."
    for split, n in (('training', n_train), ('testing', n_test)):
        for d in range(10):
            (root/split/str(d)).mkdir(parents=True, exist_ok=True)
            for i in range(n): (root/split/str(d)/f'{d*100+i}.png').write_bytes(digit_png(d, i%50))
    return root

ISOLATED = itertools.count()

@pytest.fixture(autouse=True)
def isolated(request, monkeypatch, tmp_path_factory):
    """Every test gets its own cache and fastai home, and no data set from the environment: in its `tmp_path` when it has
    one, else in a folder made only if the test writes there (making a `tmp_path` for each test took 4 ms, 1.5 s in all)."""
    home = request.getfixturevalue('tmp_path') if 'tmp_path' in request.fixturenames else \
        tmp_path_factory.getbasetemp()/'isolated'/str(next(ISOLATED))
    monkeypatch.setenv('MNIST_SCRATCH_CACHE', str(home/'cache'))
    monkeypatch.setenv('FASTAI_HOME', str(home/'fastai'))
    monkeypatch.delenv('MNIST_SCRATCH_DATA', raising=False)
    # A test's files need not survive a power cut: fsync, which the library calls before each atomic rename, waited on the
    # disk 130 times per run (2 to 7 ms each). The file descriptor is still checked, so a wrong one fails as it would.
    monkeypatch.setattr(os, 'fsync', lambda fd: os.fstat(fd if isinstance(fd, int) else fd.fileno()) and None)

def listing(folder):
    "Every entry under `folder`, links not followed: its path, type and permissions, size and time."
    found, todo, start = [], [str(folder)], len(str(folder)) + 1
    while todo: # os.scandir, not os.walk and Path: a third of the time, and the `tiny` fixture lists twice per test
        with os.scandir(todo.pop()) as entries:
            for e in entries:
                st = e.stat(follow_symlinks=False)
                found.append((e.path[start:], st.st_mode, st.st_size, st.st_mtime_ns))
                if e.is_dir(follow_symlinks=False): todo.append(e.path)
    return sorted(found)

@pytest.fixture(scope='session')
def shared_tiny(tmp_path_factory):
    return make_tiny_mnist(tmp_path_factory.mktemp('shared')/'tiny')

@pytest.fixture
def tiny(request, shared_tiny):
    """The tiny MNIST folder: one for all the tests that only read it (writing its 50 PNGs for each test took a quarter of
    `make test-fast`), a fresh one for each test marked `writes_tiny`. A test that changes the shared one fails."""
    if request.node.get_closest_marker('writes_tiny'):
        yield make_tiny_mnist(request.getfixturevalue('tmp_path')/'tiny')
        return
    before = listing(shared_tiny)
    yield shared_tiny
    if listing(shared_tiny) != before:
        shutil.rmtree(shared_tiny)
        make_tiny_mnist(shared_tiny) # as it was, for the tests after this one
        pytest.fail('the test changed the shared `tiny` folder: mark it @pytest.mark.writes_tiny', pytrace=False)

def fake_untar_data(monkeypatch, untar_data):
    "Make `untar_data` what the library's download calls, without importing fastai (4 s) when it is not imported yet."
    if 'fastai.data.external' in sys.modules: monkeypatch.setattr(sys.modules['fastai.data.external'], 'untar_data', untar_data)
    else: # `from fastai.data.external import untar_data, URLs` takes a module found in sys.modules as it is, parents unimported
        fake = types.ModuleType('fastai.data.external')
        fake.untar_data, fake.URLs = untar_data, types.SimpleNamespace(MNIST='https://s3.amazonaws.com/fast-ai-imageclas/mnist_png.tgz')
        monkeypatch.setitem(sys.modules, 'fastai.data.external', fake)

@pytest.fixture
def no_download(monkeypatch):
    "Make fastai's download fail as it does offline, and count the attempts."
    calls = []
    def fail(*args, **kwargs):
        calls.append(args)
        raise OSError('network is unreachable')
    fake_untar_data(monkeypatch, fail)
    return calls

def slow_deselected(markexpr):
    "Whether `-m markexpr` leaves out every test marked slow, whatever other marks it has."
    if not markexpr or '(' in markexpr and '=' in markexpr: return False # none given, or marks with arguments: not worked out
    try: from _pytest.mark.expression import Expression # how pytest reads -m itself (not public: if it moves, nothing is skipped)
    except ImportError: return False
    names = sorted(set(re.findall(r'[\w.:+\-\[\]/]+', markexpr)) - {'and', 'or', 'not', 'slow'})
    if len(names) > 8: return False
    expr = Expression.compile(markexpr)
    return not any(expr.evaluate(lambda name, **kw: name == 'slow' or name in {n for i, n in enumerate(names) if bits >> i & 1})
                   for bits in range(1 << len(names)))

def pytest_ignore_collect(collection_path, config):
    """Leave unread a test file whose every test is slow (its `pytestmark` says so) in a run that leaves slow tests out:
    `make test-fast` then does not import hypothesis for test_fuzz.py, nor anything else such files need."""
    if collection_path.suffix == '.py' and collection_path.name.startswith('test_') and slow_deselected(config.getoption('markexpr')):
        src = collection_path.read_text()
        if any(isinstance(n, ast.Assign) and [getattr(t, 'id', None) for t in n.targets] == ['pytestmark']
               and 'pytest.mark.slow' in ast.get_source_segment(src, n) for n in ast.parse(src).body): return True

def pytest_collection_finish(session):
    "Freeze what collecting imported (the library, the test modules), as above, and collect garbage again from here on."
    gc.freeze()
    gc.enable()

@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    "Import the modules a test names in `@pytest.mark.imports(...)` before its fixtures, so before the state below is captured."
    new = [name for mark in item.iter_markers('imports') for name in mark.args if name not in sys.modules]
    for name in new:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore') # fastai's import warns about torch.jit.script and a pandas option: not ours to fix
            importlib.import_module(name)
    if new: gc.freeze() # what they imported lives to the end, as what collection imported (above)

def numpy_rng_state():
    "The words and position of NumPy's global Mersenne Twister, as bytes: any draw changes them (a copy, not 80 us of `np.random.get_state()`)."
    import ctypes, numpy as np
    return ctypes.string_at(np.random.get_bit_generator().ctypes.state_address, 624*4 + 4) # mt19937_state: uint32 key[624]; int pos

def global_state():
    "What a library function must not leave changed: the global RNGs, warning filters and format, denormal flushing."
    import torch
    from mnist_scratch.fast import denormals_flushing
    return dict(torch_rng=torch.get_rng_state(), python_rng=random.getstate(), numpy_rng=numpy_rng_state(),
                warning_filters=list(warnings.filters), formatwarning=warnings.formatwarning, flush_denormal=denormals_flushing())

def pytest_configure(config):
    config.addinivalue_line('markers', 'global_rng: the test draws its own data from the global RNGs; they are restored after it, not checked')
    config.addinivalue_line('markers', 'slow: more than about a second; `make test-fast` leaves these out')
    config.addinivalue_line('markers', 'writes_tiny: the test changes the `tiny` folder, so it gets one of its own')
    config.addinivalue_line('markers', 'imports(*modules): modules whose first import changes global state (fastai draws from '
                            "Python's generator and adds warning filters): imported before the test, so that the check below stays exact")

@pytest.fixture(autouse=True)
def leaves_no_global_state(request):
    "Fail a test after which the global RNGs, the warning filters or format, or denormal flushing are not as before."
    import numpy as np, torch
    # a test marked `global_rng` draws its own data from the global generators: they are put back after it, not checked
    rngs = request.node.get_closest_marker('global_rng') and (torch.get_rng_state(), random.getstate(), np.random.get_state())
    # a copy of sys.modules, not a set of its names: a third of the time, and the names only matter when the test fails
    modules, before = sys.modules.copy(), global_state()
    yield
    if rngs: torch.set_rng_state(rngs[0]); random.setstate(rngs[1]); np.random.set_state(rngs[2])
    if 'fastai' in sys.modules and 'fastai' not in modules: # whatever else it changed, fastai's import always does
        pytest.fail("the test imported fastai: mark it @pytest.mark.imports('fastai.vision.all'), so that the import is not taken "
                    "for a change the test made", pytrace=False)
    after = global_state()
    changed = [k for k in before if not (torch.equal(before[k], after[k]) if k == 'torch_rng' else before[k] == after[k])]
    if changed:
        new = sorted({m.split('.')[0] for m in sys.modules.keys() - modules.keys()})
        assert not changed, f'the test left global state changed: {changed}' + (
            f' (it imported {", ".join(new)} for the first time: if an import made the change, name it in @pytest.mark.imports)' if new else '')

@pytest.hookimpl(tryfirst=True, optionalhook=True) # before pytest-xdist's own; a hook only pytest-xdist knows
def pytest_xdist_make_scheduler(config, log):
    "`--dist loadfile` (a file to each process in turn), with the files that import torch._dynamo (1.3 s) all sent to one."
    if config.getvalue('dist') != 'loadfile': return None
    from xdist.scheduler import LoadFileScheduling
    class DynamoFilesTogether(LoadFileScheduling):
        def _split_scope(self, nodeid):
            file = super()._split_scope(nodeid)
            return 'torch._dynamo' if imports_dynamo(file) else file
    return DynamoFilesTogether(config, log)

@functools.cache
def imports_dynamo(file):
    "Whether a test file marks tests `@pytest.mark.imports('torch._dynamo')` (the controlling process imports no test file)."
    return "imports('torch._dynamo')" in (ROOT/file).read_text()
