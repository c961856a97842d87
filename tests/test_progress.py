"Progress in a log (stdout not a terminal: CI, `| tee`, nohup): where the data came from first, then extraction, decoding and each epoch."
import re, tarfile, pytest
from conftest import make_tiny_mnist
from mnist_scratch.cli import main
from mnist_scratch import files
from mnist_scratch.files import Progress, progress_shown
from mnist_scratch.sources import load_mnist
from mnist_scratch.experiments import EXPERIMENTS, run_experiment

def tiny_tgz(tmp_path):
    "A tiny MNIST as fastai ships it: `mnist_png/training/...` in a .tgz."
    root = make_tiny_mnist(tmp_path/'src'/'mnist_png')
    with tarfile.open(tmp_path/'mnist_png.tgz', 'w:gz') as tar: tar.add(root, arcname='mnist_png')
    return tmp_path/'mnist_png.tgz'

@pytest.mark.timeout(60)
def test_a_log_shows_data_extraction_decoding_and_every_epoch(tmp_path, capsys):
    "`reproduce` into a log: the data line first, then extraction, decoding, a line per epoch, and the result."
    tgz = tiny_tgz(tmp_path)
    assert main(['reproduce', '--only', 'linear-ce,mlp', '--epochs', '3', '--data', str(tgz), '--out', str(tmp_path/'out')]) == 0
    err = capsys.readouterr().err.splitlines()
    assert err[0] == f'data: the path given, {tgz}' # where the data came from, before any wait
    steps = [l.split(':')[0] for l in err]
    want = ['data', 'extracting mnist_png.tgz', 'decoding the training images', 'decoding the testing images', 'linear-ce', 'mlp']
    assert [s for i, s in enumerate(steps) if i == 0 or s != steps[i-1]] == want, err # in this order, each step once
    assert err[1] == f'extracting mnist_png.tgz: started ({tgz.stat().st_size:,} bytes)'
    assert err[2].startswith('extracting mnist_png.tgz: done in ')
    assert err[3] == 'decoding the training images: started (30 images)' and 'decoding the testing images: started (20 images)' in err
    epochs = [l for l in err if ': epoch ' in l]
    assert [l.split(',')[0] for l in epochs] == [f'{k}: epoch {i}/3' for k in ('linear-ce', 'mlp') for i in (1, 2, 3)]
    assert all(re.fullmatch(r'[\w-]+: epoch \d/3, training loss \d+\.\d{4}, \d+\.\d s', l) for l in epochs), epochs
    assert re.fullmatch(r'linear-ce: \d+\.\d\d% in \d+\.\d s', err[err.index(epochs[2]) + 1]) # the result under its epochs

@pytest.mark.timeout(60)
def test_the_lines_report_the_losses_training_recorded(tiny, capsys):
    "Each epoch's line gives that epoch's mean training loss, as the result records it; the training is the same with and without them."
    data = load_mnist(tiny, show_progress=False)
    quiet = run_experiment(EXPERIMENTS['mlp'], data, epochs=3, bs=8)
    assert capsys.readouterr().err == '' # no progress asked for: a library call stays quiet
    with progress_shown('lines'): shown = run_experiment(EXPERIMENTS['mlp'], data, epochs=3, bs=8)
    assert shown.loss == quiet.loss and shown.history == quiet.history
    logged = [float(re.search(r'training loss ([\d.]+)', l)[1]) for l in capsys.readouterr().err.splitlines()]
    assert logged == pytest.approx(shown.loss, abs=1e-4) # 4 batches of 8 (30 images) an epoch: the lines count them right

@pytest.mark.timeout(30)
def test_lines_come_every_quarter_and_every_ten_seconds(monkeypatch, capsys):
    "A slow step writes a line at least every 10 s even between quarters; a fast one a line each quarter, then when it is done."
    clock = iter(range(0, 1000, 11)) # each look at the clock: 11 s later
    monkeypatch.setattr(files.time, 'monotonic', lambda: next(clock))
    p = Progress('decoding', 1000, how='lines')
    for done in (1, 2, 3): p.update(done) # under 1% each, but 11 s apart
    p.done()
    assert capsys.readouterr().err.splitlines() == ['decoding: started (1,000)', 'decoding: 0% (1 of 1,000, 11 s)',
        'decoding: 0% (2 of 1,000, 22 s)', 'decoding: 0% (3 of 1,000, 33 s)', 'decoding: done in 44.0 s']
    monkeypatch.setattr(files.time, 'monotonic', lambda: 0)
    p = Progress('decoding', 100, how='lines')
    for done in range(1, 101): p.update(done)
    assert capsys.readouterr().err.splitlines() == ['decoding: started (100)', 'decoding: 25% (25 of 100, 0 s)',
        'decoding: 50% (50 of 100, 0 s)', 'decoding: 75% (75 of 100, 0 s)']

@pytest.mark.timeout(60)
def test_nothing_is_shown_unless_asked(tmp_path, capsys):
    "`load_mnist(show_progress=False)` extracts and decodes an archive without a word."
    load_mnist(tiny_tgz(tmp_path), show_progress=False)
    assert capsys.readouterr() == ('', '')
