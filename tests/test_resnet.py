"resnet18 (notebook 06): no downloads, the fast tensor path, and the report."
import json, socket, pytest, torch
from mnist_scratch.loading import load_mnist
from mnist_scratch.resnet import resnet18_learner, tensor_dls, folder_dls, mnist_subset_files, run_resnet18
from mnist_scratch.cli import main

@pytest.fixture
def no_network(monkeypatch):
    "Any attempt to open a network connection fails the test."
    def refuse(*args, **kwargs): pytest.fail(f'network access attempted: {args}')
    monkeypatch.setattr(socket.socket, 'connect', refuse)
    monkeypatch.setattr(socket, 'create_connection', refuse)

def test_pretrained_false_downloads_nothing(tiny, no_network):
    learn = resnet18_learner(folder_dls(tiny, bs=8))
    assert sum(p.numel() for p in learn.model.parameters()) > 11_000_000
    xb, yb = learn.dls.one_batch()
    assert xb.shape == (8, 3, 28, 28) and learn.model(xb).shape == (8, 10)

def test_folder_dls_is_from_folder(tiny):
    from fastai.vision.all import ImageDataLoaders
    ours, theirs = folder_dls(tiny), ImageDataLoaders.from_folder(tiny, train='training', valid='testing')
    assert sorted(map(str, ours.train_ds.items)) == sorted(map(str, theirs.train_ds.items))
    assert sorted(map(str, ours.valid_ds.items)) == sorted(map(str, theirs.valid_ds.items))
    assert list(ours.vocab) == list(theirs.vocab) == [str(d) for d in range(10)]
    assert len(mnist_subset_files(tiny, 1)) == 20

def test_tensor_dls_serves_the_decoded_tensors(tiny):
    m = load_mnist(tiny, show_progress=False)
    dls = tensor_dls(m, bs=8, device='cpu')
    xb, yb = dls.valid.one_batch()
    assert xb.shape == (8, 1, 28, 28) and torch.equal(xb[:, 0], torch.cat(m.test)[:8])
    assert yb.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    assert sum(len(yb) for _, yb in dls.train) == 24 # 30 images, the partial last batch of 6 dropped
    assert sorted(torch.cat([yb for _, yb in dls.valid]).tolist()) == sorted([d for d in range(10) for _ in range(2)])

def test_run_resnet18_reports(tiny, no_network):
    m = load_mnist(tiny, show_progress=False)
    r = run_resnet18(m, epochs=1, bs=8)
    assert len(r['history']) == 1 and len(r['per_digit']) == 10 and 0 <= r['accuracy'] <= 1
    assert r['accuracy'] == pytest.approx(r['history'][-1]) # fastai's metric and our exact count agree
    assert (r['epochs'], r['lr'], r['bs'], r['device']) == (1, 0.1, 8, 'cpu') and r['parameters'] > 11_000_000

def test_cli_resnet18(tiny, tmp_path, capsys):
    assert main(['reproduce', '--only', 'resnet18', '--epochs', '1', '--bs', '16', '--data', str(tiny), '--out', str(tmp_path)]) == 0
    res = json.loads((tmp_path/'results.json').read_text())
    assert res['experiments']['resnet18']['epochs'] == 1 and res['machine']['device'] == 'cpu'
    assert 'resnet18 on the CPU takes a while' in capsys.readouterr().err

def test_resnet18_same_seed_same_numbers(tiny):
    m = load_mnist(tiny, show_progress=False)
    a, b = [run_resnet18(m, epochs=1, bs=8, seed=5) for _ in range(2)]
    assert a['history'] == b['history'] and a['confusion'] == b['confusion']
