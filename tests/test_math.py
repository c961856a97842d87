"The gradients that notebooks 03 and 04 derive by hand, against autograd and PyTorch's own losses."
import pytest, torch
import torch.nn.functional as F
from mnist_scratch.losses import cross_entropy_grad, cross_entropy_loss, cross_entropy_stable
from mnist_scratch.training import seed_spread
from mnist_scratch.training import run_linear

def test_chain_rule_by_hand():
    "Notebook 03's graph z = w*x + b, d = z - t, L = d**2 at x=2, w=0.5, b=1, t=3: forward values and the backward pass."
    x, t = torch.tensor(2.), torch.tensor(3.)
    w, b = torch.tensor(0.5, requires_grad=True), torch.tensor(1., requires_grad=True)
    z = w*x + b; d = z - t; L = d**2
    assert (z.item(), d.item(), L.item()) == (2., -1., 1.)
    assert [v.grad_fn.name() for v in (z, d, L)] == ['AddBackward0', 'SubBackward0', 'PowBackward0']
    L.backward()
    dL_dz = 2*d.item()*1                    # the local slopes multiplied along the path
    assert (w.grad.item(), b.grad.item()) == (dL_dz*x.item(), dL_dz) == (-4., -2.)

@pytest.mark.parametrize('x0', [-2.5, 0.3, 3.])
def test_chain_rule_matches_finite_differences(x0):
    "The same rule on a deeper graph, sigmoid(w*x + b)**2, against a central difference in float64."
    x = torch.tensor(x0, dtype=torch.float64)
    w = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)
    f = lambda w: torch.sigmoid(w*x - 0.2)**2
    f(w).backward()
    s = torch.sigmoid(w.detach()*x - 0.2)
    by_hand = 2*s * s*(1 - s) * x           # d(s²)/ds · dσ/dz · dz/dw
    eps = 1e-6
    numeric = (f(w.detach() + eps) - f(w.detach() - eps))/(2*eps)
    assert torch.allclose(w.grad, by_hand) and torch.allclose(by_hand, numeric, atol=1e-8)

def test_sigmoid_slope_is_sigma_one_minus_sigma():
    z = torch.linspace(-30, 30, 601, dtype=torch.float64, requires_grad=True)
    s = z.sigmoid()
    s.sum().backward()
    assert torch.allclose(z.grad, (s*(1 - s)).detach(), atol=1e-15)
    assert z.grad.max().item() == 0.25 and z.grad.argmax().item() == 300 # largest at z = 0, where it is 1/4

@pytest.mark.parametrize('bs', [1, 7, 256])
def test_cross_entropy_grad_matches_pytorch(bs):
    "(softmax - one_hot)/bs is the gradient of F.cross_entropy (mean over the batch) with respect to the scores."
    g = torch.Generator().manual_seed(bs)
    logits, y = torch.randn(bs, 10, generator=g)*5, torch.randint(0, 10, (bs,), generator=g)
    z = logits.clone().requires_grad_()
    F.cross_entropy(z, y).backward()
    g = cross_entropy_grad(logits, y)
    assert torch.allclose(z.grad, g, atol=1e-7)
    assert torch.allclose(g.sum(1), torch.zeros(bs), atol=1e-6) # each row: probabilities minus one 1
    for loss in (cross_entropy_loss, cross_entropy_stable):
        z = logits.clone().requires_grad_()
        loss(z, y).backward()
        assert torch.allclose(z.grad, g, atol=1e-6)

def test_cross_entropy_grad_of_a_confident_mistake():
    "Where the true digit's probability is ~0, its gradient is -1/bs: cross-entropy's push does not fade."
    logits, y = torch.tensor([[-20., 0., 0.], [30., 0., 0.]]), torch.tensor([0, 0])
    g = cross_entropy_grad(logits, y)
    assert torch.allclose(g[0, 0], torch.tensor(-0.5), atol=1e-8) and torch.allclose(g[1], torch.zeros(3), atol=1e-8)

def test_seed_spread_keeps_each_runs_last_accuracy():
    seen = []
    def run(seed):
        seen.append(seed)
        return None, {'accuracy': [0.1, seed/100]}
    accs = seed_spread(run, [3, 1, 2])
    assert seen == [3, 1, 2] and torch.allclose(accs, torch.tensor([0.03, 0.01, 0.02]))
    assert len(seed_spread(run)) == 5 and seen[-5:] == [1, 2, 3, 4, 5] # seeds 1 to 5 unless told

@pytest.mark.timeout(60)
def test_seed_spread_of_real_runs():
    "The same seed gives the same run, another seed other starting weights (tiny random data, two short epochs)."
    g = torch.Generator().manual_seed(0) # the data's own: the check after the test sees that run_linear leaves the global one alone
    x, y = torch.rand(300, 784, generator=g), torch.randint(0, 10, (300,), generator=g)
    run = lambda seed: run_linear(F.cross_entropy, (x, y), (x[:100], y[:100]), epochs=2, lr=0.1, bs=64, seed=seed)
    accs = seed_spread(run, [1, 1, 2])
    assert accs.shape == (3,) and accs[0] == accs[1] and ((0 <= accs) & (accs <= 1)).all()
    assert not torch.equal(run(1)[0][0], run(2)[0][0])
