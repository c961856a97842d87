"Interrupted and concurrent runs never leave a cache that a later run would trust; the data folder is never written."
import os, signal, subprocess, sys, tarfile, time, pytest
from conftest import make_tiny_mnist
from mnist_scratch.cache import cache_dir
from mnist_scratch.sources import load_mnist

LOAD = "import sys; from mnist_scratch.sources import load_mnist; m = load_mnist(sys.argv[1], show_progress=False); print(m.n_train, m.n_valid, float(sum(t.sum() for t in m.train)))"

@pytest.mark.slow
def test_two_processes_build_the_cache_at_once(tmp_path):
    data = make_tiny_mnist(tmp_path/'data', n_train=60, n_test=10)
    tgz = tmp_path/'mnist_png.tgz'
    with tarfile.open(tgz, 'w:gz') as tar: tar.add(data, arcname='mnist_png')
    procs = [subprocess.Popen([sys.executable, '-c', LOAD, str(tgz)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=os.environ.copy()) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outs]
    expected = f"600 100 {float(sum(t.sum() for t in load_mnist(data, cache=False, show_progress=False).train))}"
    assert [o[0].split('\n')[0] for o in outs] == [expected]*2
    assert len(list((cache_dir()/'archives').iterdir())) == 1 # one extracted copy, no temporary leftovers
    assert [p.name for p in (cache_dir()/'tensors').iterdir()] and not list((cache_dir()/'tensors').glob('.writing-*'))

@pytest.mark.slow
def test_killed_extraction_leaves_nothing_trusted_and_the_next_run_cleans_up(tmp_path):
    data = make_tiny_mnist(tmp_path/'data', n_train=300, n_test=50)
    tgz = tmp_path/'mnist_png.tgz'
    with tarfile.open(tgz, 'w:gz') as tar: tar.add(data, arcname='mnist_png')
    archives = cache_dir()/'archives'
    p = subprocess.Popen([sys.executable, '-c', LOAD, str(tgz)], env=os.environ.copy(),
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (archives.is_dir() and list(archives.glob('.building-*/mnist_png/training/0/*'))):
        assert time.time() < deadline and p.poll() is None, 'extraction never started'
        time.sleep(0.001)
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert [q.name for q in archives.iterdir() if not q.name.startswith('.')] == [] # no half-extracted folder in place
    [left] = archives.glob('.building-*')
    os.utime(left, (0, 0)) # the next run only removes leftovers older than a minute: younger ones may be starting up
    m = load_mnist(tgz, show_progress=False) # a later run extracts afresh and gets all the data
    assert (m.n_train, m.n_valid) == (3000, 500)
    assert not list(archives.glob('.building-*')) # and removes what the killed one left

def test_data_folder_is_never_written(tmp_path):
    data = make_tiny_mnist(tmp_path/'data')
    before = sorted((p, p.stat().st_mtime_ns) for p in data.rglob('*'))
    load_mnist(data, show_progress=False)
    load_mnist(data, show_progress=False)
    assert sorted((p, p.stat().st_mtime_ns) for p in data.rglob('*')) == before
    assert cache_dir() not in data.parents
