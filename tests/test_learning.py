"The from-scratch pieces of notebooks 03-05 against PyTorch's own reference implementations."
import pytest, torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader
from mnist_scratch.training import flatten_xy, linear_model, mnist_loss
from mnist_scratch.training import split_train_valid, init_params, batch_accuracy, accuracy, validate_epoch, calc_grad, train_epoch
from mnist_scratch.fast import Batches, by_columns, linear_ce_epoch
from mnist_scratch.losses import softmax, mnist_loss_softmax, cross_entropy_loss, logsumexp, log_softmax, cross_entropy_stable
from mnist_scratch.training import run_linear
from mnist_scratch.mlp import init_mlp_params, simple_neural_net, run_mlp

# torch.optim.SGD's first use imports torch._dynamo, which adds warning filters: imported before the state is taken
optimizer_imports = pytest.mark.imports('torch._dynamo')

@pytest.fixture
def logits():
    g = torch.Generator().manual_seed(0)
    return torch.randn(16, 10, generator=g)*3, torch.randint(0, 10, (16,), generator=g)

def test_softmax_and_logsumexp(logits):
    x, _ = logits
    assert torch.allclose(softmax(x), torch.softmax(x, -1), atol=1e-6)
    assert torch.allclose(logsumexp(x).squeeze(-1), torch.logsumexp(x, -1), atol=1e-5)
    assert torch.allclose(log_softmax(x), F.log_softmax(x, -1), atol=1e-5)

@pytest.mark.parametrize('loss', [cross_entropy_loss, cross_entropy_stable])
def test_cross_entropy_matches_pytorch(loss, logits):
    x, y = logits
    assert torch.allclose(loss(x, y), F.cross_entropy(x, y), atol=1e-5)

def test_mse_losses_match_pytorch(logits):
    x, y = logits
    onehot = F.one_hot(y, 10).float()
    assert torch.allclose(mnist_loss(x, y), F.mse_loss(torch.sigmoid(x), onehot))
    assert torch.allclose(mnist_loss_softmax(x, y), F.mse_loss(torch.softmax(x, -1), onehot))

@pytest.mark.parametrize('loss', [cross_entropy_loss, cross_entropy_stable])
def test_cross_entropy_gradient_closed_form(loss, logits):
    x, y = logits
    x = x.clone().requires_grad_()
    loss(x, y).backward()
    expected = (torch.softmax(x.detach(), -1) - F.one_hot(y, 10))/len(y)
    assert torch.allclose(x.grad, expected, atol=1e-6)

@pytest.mark.imports('sympy') # gradcheck's first call imports it (through torch.fx), and it adds a warning filter
@pytest.mark.parametrize('loss', [mnist_loss, mnist_loss_softmax, cross_entropy_loss, cross_entropy_stable])
def test_gradcheck_losses(loss, logits):
    x, y = logits
    assert torch.autograd.gradcheck(lambda t: loss(t, y), (x.double().requires_grad_(),))

@pytest.mark.imports('sympy') # gradcheck's first call imports it (through torch.fx), and it adds a warning filter
def test_gradcheck_models():
    "Autograd's gradients of both models against finite differences, in float64 (small sizes keep it fast)."
    g = torch.Generator().manual_seed(0)
    xb = torch.rand(3, 6, dtype=torch.float64, generator=g)
    param = lambda *s: torch.randn(*s, dtype=torch.float64, generator=g, requires_grad=True)
    assert torch.autograd.gradcheck(lambda *ps: linear_model(xb, ps), [param(6, 3), param(3)])
    assert torch.autograd.gradcheck(lambda *ps: simple_neural_net(xb, ps), [param(6, 4), param(4), param(4, 3), param(3)])

def test_stable_where_naive_breaks():
    x, y = torch.tensor([[0., 200., 0.], [1000., 0., -1000.]]), torch.tensor([0, 0])
    naive, stable = cross_entropy_loss(x, y), cross_entropy_stable(x, y)
    assert not torch.isfinite(naive)
    assert torch.isfinite(stable) and torch.allclose(stable, F.cross_entropy(x, y))
    assert torch.allclose(log_softmax(x), F.log_softmax(x, -1))

@pytest.mark.global_rng # nn.Linear draws its weights from the global generator
def test_linear_model_matches_nn_linear():
    torch.manual_seed(0)
    layer, xb = nn.Linear(784, 10), torch.rand(5, 784)
    params = layer.weight.detach().T, layer.bias.detach()
    assert torch.allclose(linear_model(xb, params), layer(xb), atol=1e-5)

@pytest.mark.global_rng # nn.Linear and init_mlp_params (the post's torch.randn) draw from the global generator
def test_mlp_matches_nn_sequential():
    torch.manual_seed(0)
    net, xb = nn.Sequential(nn.Linear(784, 64), nn.Sigmoid(), nn.Linear(64, 10)), torch.rand(5, 784)
    params = net[0].weight.detach().T, net[0].bias.detach(), net[2].weight.detach().T, net[2].bias.detach()
    assert torch.allclose(simple_neural_net(xb, params), net(xb), atol=1e-5)
    assert [p.shape for p in init_mlp_params()] == [(784, 64), (64,), (64, 10), (10,)]

@pytest.mark.global_rng # init_params is the post's torch.randn: it draws from the global generator
def test_init_params():
    p = init_params((784, 10))
    assert p.shape == (784, 10) and p.requires_grad and 0.9 < p.std() < 1.1

def test_accuracy_hand_count():
    preds = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7], [0.1, 0.9]])
    y = torch.tensor([0, 1, 1, 1, 0]) # right, right, wrong, right, wrong
    assert batch_accuracy(preds, y).item() == pytest.approx(3/5)
    ident = lambda xb, params: xb
    assert accuracy(ident, None, preds, y) == pytest.approx(3/5)
    # the post's mean of batch accuracies over batches of 4 and 1: (3/4 + 0)/2, not 3/5
    assert validate_epoch(ident, None, DataLoader(list(zip(preds, y)), batch_size=4, generator=torch.Generator())) == pytest.approx(0.375)

@pytest.mark.global_rng # init_params draws from the global generator
@optimizer_imports
def test_sgd_step_matches_torch_optim():
    torch.manual_seed(0)
    xb, yb = torch.rand(8, 784), torch.randint(0, 10, (8,))
    params = init_params((784, 10)), init_params(10)
    ref = [p.detach().clone().requires_grad_() for p in params]
    train_epoch(linear_model, params, cross_entropy_loss, [(xb, yb)], lr=0.5)
    opt = torch.optim.SGD(ref, lr=0.5)
    F.cross_entropy(xb@ref[0] + ref[1], yb).backward()
    opt.step()
    assert all(torch.allclose(p, r, atol=1e-6) for p, r in zip(params, ref))
    assert all(p.grad is None for p in params) # gradients are dropped, so the next batch starts fresh

@pytest.mark.global_rng # init_params draws from the global generator
def test_calc_grad_matches_autograd():
    torch.manual_seed(0)
    xb, yb = torch.rand(8, 784), torch.randint(0, 10, (8,))
    params = init_params((784, 10)), init_params(10)
    loss = calc_grad(xb, yb, linear_model, params, cross_entropy_loss)
    expected = xb.T@((torch.softmax(xb@params[0].detach() + params[1].detach(), -1) - F.one_hot(yb, 10))/8)
    assert torch.allclose(params[0].grad, expected, atol=1e-5)
    assert torch.allclose(loss, F.cross_entropy(xb@params[0] + params[1], yb))

def test_batches_like_a_dataloader():
    x, y = torch.arange(1000.).view(-1, 1), torch.arange(1000)
    b = Batches(x, y, bs=256, generator=torch.Generator().manual_seed(0))
    dl = DataLoader(list(zip(x, y)), batch_size=256, shuffle=True, generator=torch.Generator().manual_seed(0))
    assert len(b) == len(dl) == 4
    assert [len(yb) for _, yb in b] == [len(yb) for _, yb in dl] == [256, 256, 256, 232]
    e1, e2 = torch.cat([yb for _, yb in b]), torch.cat([yb for _, yb in b])
    assert sorted(e1.tolist()) == list(range(1000)) and not torch.equal(e1, e2) # each once, reshuffled every epoch
    assert all(torch.equal(xb.flatten().long(), yb) for xb, yb in b) # images stay with their labels
    assert torch.cat([yb for _, yb in Batches(x, y, 300, shuffle=False)]).tolist() == list(range(1000))

def separable(n=20):
    "Ten classes of 784-pixel 'images': class d lights up pixels 78d..78d+77, plus noise."
    y = torch.arange(10).repeat(n)
    x = 0.1*torch.rand(len(y), 784, generator=torch.Generator().manual_seed(1)) # not the global generator: training must leave that alone
    for i, d in enumerate(y): x[i, 78*d:78*d+78] += 1
    return x, y

@pytest.mark.parametrize('run', [run_linear, run_mlp])
def test_training_reaches_100_percent_on_separable_data(run):
    x, y = separable()
    _, hist = run(cross_entropy_loss, (x, y), (x, y), epochs=5, lr=1., bs=16) # 100% from the first epoch on: 30 added nothing
    assert hist['accuracy'][-1] == 1.0 and hist['loss'][-1] < hist['loss'][0]

def test_same_seed_same_numbers():
    x, y = separable(5)
    runs = [run_linear(mnist_loss_softmax, (x, y), (x, y), epochs=3, bs=8, seed=7) for _ in range(2)]
    assert runs[0][1] == runs[1][1]
    assert all(torch.equal(a, b) for a, b in zip(runs[0][0], runs[1][0]))

def test_flatten_and_split():
    ts = [torch.full((3, 28, 28), d/10) for d in range(10)]
    x, y = flatten_xy(ts)
    assert x.shape == (30, 784) and y.tolist() == [d for d in range(10) for _ in range(3)]
    assert torch.equal(x[7], torch.full((784,), 0.2))
    (tx, ty), (vx, vy) = split_train_valid(x, y, n_valid=10, seed=0)
    assert len(tx) == 20 and len(vx) == 10
    assert sorted(torch.cat([ty, vy]).tolist()) == sorted(y.tolist())
    assert torch.equal(split_train_valid(x, y, 10, seed=0)[1][1], vy) # fixed by the seed

def test_batches_are_the_permutations_rows():
    "Each batch is the next `bs` rows of one random permutation per epoch, as slicing a reordered copy would give."
    x, y = torch.randn(1000, 5, generator=torch.Generator().manual_seed(0)), torch.arange(1000)
    idx = torch.randperm(1000, generator=torch.Generator().manual_seed(3))
    batches = list(Batches(x, y, 128, generator=torch.Generator().manual_seed(3)))
    for i, (xb, yb) in enumerate(batches):
        assert torch.equal(xb, x[idx][128*i:128*(i+1)]) and torch.equal(yb, y[idx][128*i:128*(i+1)])

@pytest.mark.global_rng # init_params draws from the global generator
def test_by_columns_same_matrix_other_layout():
    w = init_params((784, 10))
    wc = by_columns(w)
    assert torch.equal(wc, w) and wc.shape == (784, 10) and wc.stride() == (1, 784)
    assert wc.is_leaf and wc.requires_grad and wc.data_ptr() != w.data_ptr()
    xb, yb = torch.rand(32, 784), torch.randint(0, 10, (32,))
    F.cross_entropy(xb@w, yb).backward(); F.cross_entropy(xb@wc, yb).backward()
    assert torch.allclose(w.grad, wc.grad, atol=1e-6) and wc.grad.stride() == (1, 784) # the gradient keeps the layout

@pytest.mark.global_rng # init_params draws from the global generator
def test_by_columns_trains_the_same_model():
    torch.manual_seed(0)
    x, y = torch.rand(512, 784), torch.randint(0, 10, (512,))
    w, b = init_params((784, 10), std=0.01), init_params(10)
    p1 = w, b
    p2 = by_columns(w), b.detach().clone().requires_grad_()
    for params in (p1, p2): train_epoch(linear_model, params, F.cross_entropy, Batches(x, y, 64, generator=torch.Generator().manual_seed(1)), 0.5)
    assert all(torch.allclose(p, q, atol=1e-5) for p, q in zip(p1, p2))

@pytest.mark.global_rng # init_params and nn.Linear draw from the global generator
@optimizer_imports
@pytest.mark.parametrize('bs', [64, 100]) # 64: 500 images end with a batch of 52, whose mean must use its own size
def test_hand_gradient_epoch_matches_autograd_and_torch_optim(bs):
    "linear_ce_epoch takes the same steps as nn.Linear + F.cross_entropy + torch.optim.SGD, and returns the mean loss."
    torch.manual_seed(0)
    x, y = torch.rand(500, 784), torch.randint(0, 10, (500,))
    w, b = init_params((784, 10), std=0.1), init_params(10)
    ref = nn.Linear(784, 10)
    with torch.no_grad(): ref.weight.copy_(w.T); ref.bias.copy_(b)
    opt, losses = torch.optim.SGD(ref.parameters(), lr=0.5), []
    for xb, yb in Batches(x, y, bs, generator=torch.Generator().manual_seed(1)):
        loss = F.cross_entropy(ref(xb), yb)
        losses.append(loss.item()); loss.backward(); opt.step(); opt.zero_grad()
    params = by_columns(w), b.detach().clone().requires_grad_()
    mean = linear_ce_epoch(params, Batches(x, y, bs, generator=torch.Generator().manual_seed(1)), 0.5)
    assert mean == pytest.approx(sum(losses)/len(losses), rel=1e-5)
    assert torch.allclose(params[0], ref.weight.T, atol=1e-5) and torch.allclose(params[1], ref.bias, atol=1e-5)
    assert params[0].stride() == (1, 784) and params[0].grad is None # updated in place, layout kept, no autograd
