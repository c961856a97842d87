"resnet18 (notebook 06 and appendix 94c): no downloads, the fast tensor path, the report, and progress in a log."
import json, socket, pytest, torch
from mnist_scratch.sources import load_mnist
import copy
import torch.nn as nn, torch.nn.functional as F
from mnist_scratch.resnet import resnet18_learner
from mnist_scratch.resnet_runs import folder_dls, mnist_subset_files, fast_resnet18_learner, ProgressLog
from mnist_scratch.fast import tensor_dls, CenterConv, use_center_convs, denormals_flushing
from mnist_scratch.experiments import EXPERIMENTS, run_experiment
from mnist_scratch.cli import main

@pytest.fixture
def no_network(monkeypatch):
    "Any attempt to open a network connection fails the test."
    def refuse(*args, **kwargs): pytest.fail(f'network access attempted: {args}')
    monkeypatch.setattr(socket.socket, 'connect', refuse)
    monkeypatch.setattr(socket, 'create_connection', refuse)

@pytest.mark.slow
@pytest.mark.global_rng # fastai draws the network's weights and its loaders' seeds from the global generators
@pytest.mark.imports('fastai.vision.all')
def test_pretrained_false_downloads_nothing(tiny, no_network):
    learn = resnet18_learner(folder_dls(tiny, bs=8))
    assert sum(p.numel() for p in learn.model.parameters()) > 11_000_000
    xb, yb = learn.dls.one_batch()
    assert xb.shape == (8, 3, 28, 28) and learn.model(xb).shape == (8, 10)

@pytest.mark.slow # fastai's import (4 s)
@pytest.mark.global_rng # fastai draws the network's weights and its loaders' seeds from the global generators
@pytest.mark.imports('fastai.vision.all')
def test_folder_dls_is_from_folder(tiny):
    from fastai.vision.all import ImageDataLoaders
    ours, theirs = folder_dls(tiny), ImageDataLoaders.from_folder(tiny, train='training', valid='testing')
    assert sorted(map(str, ours.train_ds.items)) == sorted(map(str, theirs.train_ds.items))
    assert sorted(map(str, ours.valid_ds.items)) == sorted(map(str, theirs.valid_ds.items))
    assert list(ours.vocab) == list(theirs.vocab) == [str(d) for d in range(10)]
    assert len(mnist_subset_files(tiny, 1)) == 20

@pytest.mark.slow # fastai's import (4 s)
@pytest.mark.global_rng # fastai draws the network's weights and its loaders' seeds from the global generators
@pytest.mark.imports('fastai.vision.all')
def test_tensor_dls_serves_the_decoded_tensors(tiny):
    m = load_mnist(tiny, show_progress=False)
    dls = tensor_dls(m, bs=8, device='cpu')
    xb, yb = dls.valid.one_batch()
    assert xb.shape == (8, 1, 28, 28) and torch.equal(xb[:, 0], torch.cat(m.test)[:8])
    assert yb.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    assert sum(len(yb) for _, yb in dls.train) == 24 # 30 images, the partial last batch of 6 dropped
    assert sorted(torch.cat([yb for _, yb in dls.valid]).tolist()) == sorted([d for d in range(10) for _ in range(2)])

@pytest.mark.slow
@pytest.mark.imports('fastai.vision.all')
def test_run_resnet18_reports(tiny, no_network):
    m = load_mnist(tiny, show_progress=False)
    r = run_experiment(EXPERIMENTS['resnet18'], m, epochs=1, bs=8)
    assert len(r.history) == len(r.loss) == 1 and len(r.per_digit) == 10
    assert r.accuracy == pytest.approx(r.history[-1]) # fastai's metric and our exact count agree
    assert r.hyperparameters == dict(epochs=1, lr=0.1, bs=8, seed=42, device=None) and r.device == 'cpu'
    assert r.parameters > 11_000_000

@pytest.mark.slow
@pytest.mark.imports('fastai.vision.all')
def test_cli_resnet18(tiny, tmp_path, capsys):
    assert main(['reproduce', '--only', 'resnet18', '--epochs', '1', '--bs', '16', '--data', str(tiny), '--out', str(tmp_path)]) == 0
    res = json.loads((tmp_path/'results.json').read_text())
    r = res['experiments']['resnet18']
    assert r['hyperparameters']['epochs'] == 1 and r['hyperparameters']['bs'] == 16 and r['device'] == 'cpu'
    assert 'resnet18 on the CPU takes a while' in capsys.readouterr().err

@pytest.mark.slow
@pytest.mark.imports('fastai.vision.all')
def test_resnet18_same_seed_same_numbers(tiny):
    m = load_mnist(tiny, show_progress=False)
    a, b = [run_experiment(EXPERIMENTS['resnet18'], m, epochs=1, bs=8, seed=5) for _ in range(2)]
    assert a.history == b.history and a.loss == b.loss and a.confusion == b.confusion

@pytest.mark.global_rng # the test's own data, and nn.Conv2d draws its weights from the global generator
@pytest.mark.imports('sympy') # `backward(gradient)` imports it (through torch.fx), and its import adds a warning filter
@pytest.mark.parametrize('size', [1, 2, 5])
def test_center_conv_is_the_same_convolution(size):
    "On any image size, outputs and gradients (input and all nine weights) match PyTorch's own convolution."
    torch.manual_seed(0)
    ref = nn.Conv2d(16, 8, 3, padding=1)
    ours = copy.deepcopy(ref); ours.__class__ = CenterConv
    x1 = torch.randn(4, 16, size, size, requires_grad=True)
    x2 = x1.detach().clone().requires_grad_()
    out1, out2 = ref(x1), ours(x2)
    assert torch.allclose(out1, out2, atol=1e-5)
    g = torch.randn_like(out1)
    out1.backward(g); out2.backward(g)
    assert torch.allclose(x1.grad, x2.grad, atol=1e-5)
    assert torch.allclose(ref.weight.grad, ours.weight.grad, atol=1e-5) and torch.allclose(ref.bias.grad, ours.bias.grad, atol=1e-5)
    if size == 1: # the eight outer weights only meet the zero padding: their gradient is exactly zero
        outer = torch.ones(3, 3, dtype=torch.bool); outer[1, 1] = False
        assert (ours.weight.grad[..., outer] == 0).all()

@pytest.mark.global_rng # nn.Conv2d draws its weights from the global generator
def test_use_center_convs_swaps_only_what_it_may():
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 8, 3, stride=2, padding=1), nn.Conv2d(8, 8, 1),
                          nn.Conv2d(8, 8, 3, padding=1, padding_mode='reflect'), nn.Conv2d(8, 8, 3, padding=2, dilation=2))
    weights = [m.weight for m in model]
    use_center_convs(model)
    assert [type(m) for m in model] == [CenterConv] + [nn.Conv2d]*4
    assert all(m.weight is w for m, w in zip(model, weights)) # the very same parameters

@pytest.mark.slow
@pytest.mark.global_rng # fastai draws the network's weights and its loaders' seeds from the global generators
@pytest.mark.imports('fastai.vision.all')
def test_fast_learner_is_the_posts_network(tiny, no_network):
    "Same layers and parameter count as the post's learner (one input channel), same outputs and gradients."
    m = load_mnist(tiny, show_progress=False)
    learn = fast_resnet18_learner(m, bs=8, device='cpu')
    assert not denormals_flushing() # building it leaves the thread's setting alone (`global_rng` turns the fixture's check off)
    plain = resnet18_learner(tensor_dls(m, bs=8, device='cpu'), n_in=1)
    assert [p.shape for p in learn.model.parameters()] == [p.shape for p in plain.model.parameters()]
    assert sum(isinstance(c, CenterConv) for c in learn.model.modules()) == 13 # every stride-1 3x3 conv of the 4 stages
    plain.model.load_state_dict(learn.model.state_dict())
    learn.model.eval(); plain.model.eval() # batch norm with fixed statistics and no dropout, so the two can be compared
    xb, yb = learn.dls.valid.one_batch()
    for model in (learn.model, plain.model): F.cross_entropy(model(xb), yb).backward()
    assert torch.allclose(learn.model(xb), plain.model(xb), atol=1e-4)
    for p, q in zip(learn.model.parameters(), plain.model.parameters()): assert torch.allclose(p.grad, q.grad, atol=1e-4)
    assert learn.opt_func is plain.opt_func and learn.loss_func is plain.loss_func

@pytest.mark.slow
@pytest.mark.global_rng # fastai draws the network's weights and its loaders' seeds from the global generators
@pytest.mark.imports('fastai.vision.all')
def test_epoch_lines_names_every_column_without_a_bar(tiny, capsys):
    from mnist_scratch.resnet_runs import epoch_lines
    learn = resnet18_learner(folder_dls(tiny, bs=8))
    with epoch_lines(learn) as l: l.fit(1, 1e-3)
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1 and '\r' not in lines[0]
    cols = dict(c.split(' ', 1) for c in lines[0].split(', '))
    assert list(cols) == ['epoch', 'train_loss', 'valid_loss', 'accuracy', 'time']
    assert float(cols['accuracy']) == pytest.approx(learn.recorder.values[-1][-1], abs=1e-4)
    assert learn.logger is print and any(type(cb).__name__ == 'ProgressCallback' for cb in learn.cbs) # both restored

@pytest.mark.slow
def test_the_first_run_in_a_process_is_like_any_other(tiny):
    "Importing fastai draws from Python's generator; `train_resnet18` imports it before seeding, so a fresh process agrees."
    import subprocess, sys
    code = ("import sys, warnings; warnings.simplefilter('ignore'); from mnist_scratch.sources import load_mnist; "
            "from mnist_scratch.resnet_runs import train_resnet18; m = load_mnist(sys.argv[1], show_progress=False); "
            "print([round(sum(p.sum().item() for p in train_resnet18(m, epochs=1, bs=8, progress=False).model.parameters()), 3) for _ in range(2)])")
    r = subprocess.run([sys.executable, '-c', code, str(tiny)], capture_output=True, text=True, timeout=300)
    first, second = json.loads(r.stdout.strip().splitlines()[-1])
    assert first == second, r.stdout + r.stderr

@pytest.mark.slow # trains resnet18 twice
@pytest.mark.global_rng # the post's pipeline draws from the global generators, as the post does
@pytest.mark.imports('fastai.vision.all')
def test_seed_runs_both_pipelines_saved_and_tabled(tiny, tmp_path):
    "seed_runs trains each pipeline from each seed, appends one JSON line per run; seed_table gives mean and spread."
    from mnist_scratch.bench import seed_runs
    save = tmp_path/'runs.jsonl'
    runs = seed_runs(load_mnist(tiny, show_progress=False), seeds=(1,), epochs=1, save=save)
    assert [(r['pipeline'], r['seed']) for r in runs] == [('post', 1), ('ours', 1)]
    assert all(0 <= r['accuracy'] <= 1 and r['seconds'] > 0 for r in runs)
    assert [json.loads(l) for l in save.read_text().splitlines()] == runs

def test_seed_table_mean_and_spread():
    from mnist_scratch.bench import seed_table
    runs = [dict(pipeline='post', seed=s, accuracy=a, seconds=60.) for s, a in ((1, .99), (2, .992), (3, .994))] + \
           [dict(pipeline='ours', seed=1, accuracy=.995, seconds=30.)]
    post, ours = seed_table(runs).splitlines()[1:]
    assert post.split() == ['post', '1', '2', '3', '99.00%', '99.20%', '99.40%', '99.20%', '99.00%-99.40%', '1.0']
    assert ours.split() == ['ours', '1', '99.50%', '99.50%', '99.50%-99.50%', '0.5']

@pytest.mark.timeout(10)
@pytest.mark.parametrize('every', [0.5, 30, 100])
def test_progress_log_a_line_at_least_every_interval(every):
    "With batches of random length, each shorter than the interval: a line as soon as `every` seconds have passed, never sooner."
    import random
    rng, t, n = random.Random(every), [0.], 3000
    log = ProgressLog(every, clock=lambda: t[0])
    stamps = [0.] # the start counts as a line: the first must come within `every` of it
    for i in range(1, n + 1):
        step = every*rng.choice([0.001, 0.05, 0.3, 0.99])*rng.random()
        t[0] += step
        due = t[0] - stamps[-1] >= every
        line = log('epoch 0 training', i, n)
        assert (line is not None) == due, (i, t[0], stamps[-1])
        if line: stamps.append(t[0])
    gaps = [b - a for a, b in zip(stamps, stamps[1:])]
    assert len(gaps) > 10 and min(gaps) >= every and max(gaps) < 2*every

def test_progress_log_estimates_the_time_left():
    "Batches of 3 s each: the estimate is the true time left in the phase, counted from the phase's start."
    t = [100.]
    log = ProgressLog(10, clock=lambda: t[0])
    log.begin() # a phase that starts at t=100
    lines = []
    for i in range(1, 21):
        t[0] += 3
        lines.append(log('epoch 1 validation', i, 20))
    got = [l for l in lines if l]
    assert got[0] == 'epoch 1 validation: batch 4 of 20, 12 s, about 48 s left' # 16 batches of 3 s to go
    assert got[-1] == 'epoch 1 validation: batch 20 of 20, 60 s, about 0 s left' and len(got) == 5
    log.printed(); t[0] += 9 # an epoch's line resets the wait
    assert log('x', 1, 2) is None

class StampedOut:
    "A stdout that records the fake clock's time of every line written to it."
    def __init__(self, clock): self.clock, self.lines = clock, []
    def write(self, s):
        self.lines += [(self.clock.now, l) for l in s.splitlines() if l]
    def flush(self): pass

class FakeClock:
    "Ten seconds pass at every reading."
    def __init__(self): self.now = -10
    def __call__(self): self.now += 10; return self.now

@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.global_rng # fastai draws the network's weights and its loaders' seeds from the global generators
@pytest.mark.imports('fastai.vision.all')
def test_epoch_lines_in_a_log_never_silent_longer_than_the_interval(tiny):
    "Training and validation both print progress lines; by the fake clock no stretch without a line exceeds `every` by more than a batch and a phase's start."
    import contextlib
    from mnist_scratch.resnet_runs import epoch_lines
    learn = resnet18_learner(folder_dls(tiny, bs=4)) # 30 training images: 7 batches; 20 test images: 5
    clock = FakeClock(); out = StampedOut(clock)
    with contextlib.redirect_stdout(out), epoch_lines(learn, every=25, clock=clock): learn.fit(2, 1e-3)
    text = [l for _, l in out.lines]
    assert sum(l.startswith('epoch ') and 'train_loss' in l for l in text) == 2 # one named line per epoch
    assert any(' training: batch ' in l for l in text) and any(' validation: batch ' in l for l in text)
    stamps = [0] + [s for s, _ in out.lines] + [clock.now]
    assert max(b - a for a, b in zip(stamps, stamps[1:])) <= 25 + 2*10, out.lines # each reading of the fake clock is 10 s
    assert not any('\r' in l for l in text)

@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.global_rng # the post's pipeline draws from the global generators, as the post does
@pytest.mark.imports('fastai.vision.all')
def test_both_pipelines_log_progress_when_stdout_is_not_a_terminal(tiny, capsys, monkeypatch):
    "As `mnist-scratch reproduce` (the fast path) and the post's pipeline train in a log: no bar, a line per batch here."
    import mnist_scratch.resnet_runs as rr
    monkeypatch.setattr(rr, 'PROGRESS_EVERY', 0) # a line after every batch: no waiting for real seconds
    rr.train_resnet18(load_mnist(tiny, show_progress=False), epochs=1, bs=8) # progress on, as `reproduce` calls it
    fast = capsys.readouterr().out.splitlines()
    rr.post_pipeline(tiny, epochs=1, bs=8)
    post = capsys.readouterr().out.splitlines()
    for lines, n_train, n_valid in ((fast, 3, 3), (post, 3, 3)): # 30 training images in batches of 8, the last dropped; 20 test images
        assert [l.split(':')[0] for l in lines if ': batch ' in l] == ['epoch 0 training']*n_train + ['epoch 0 validation']*n_valid, lines
        assert lines[-1].startswith('epoch 0, train_loss ')
