"The building blocks (notebook 06_building_blocks): each rung against PyTorch's or fastai's own, with the same seed."
import pytest, torch
from functools import partial
from torch import nn
import torch.nn.functional as F
from torch.utils.data import TensorDataset, DataLoader
from mnist_scratch.blocks import Learner, small_cnn, train_cnn
from mnist_scratch.fast import Batches
from mnist_scratch.losses import cross_entropy_loss
from mnist_scratch.mlp import init_mlp_params, simple_neural_net
from mnist_scratch.sources import load_mnist
from mnist_scratch.training import seeded, train_epoch

# an optimizer's first step imports torch._dynamo, which adds warning filters: imported before the state is taken
pytestmark = [pytest.mark.timeout(60), pytest.mark.imports('torch._dynamo')]


def data(n, seed=0):
    "`n` random 784-pixel images with random labels, from their own generator."
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 28*28, generator=g), torch.randint(0, 10, (n,), generator=g)

def mlp(seed=42, act=nn.Sigmoid):
    "A 784-64-10 network; PyTorch draws its start from the global generators, so inside `seeded`."
    with seeded(seed): return nn.Sequential(nn.Linear(28*28, 64), act(), nn.Linear(64, 10))

def as_sequential(params):
    "`simple_neural_net`'s four tensors in an `nn.Sequential`: `nn.Linear` stores its weight as `[out, in]`."
    net = mlp()
    with torch.no_grad():
        for layer, w, b in ((net[0], *params[:2]), (net[2], *params[2:])): layer.weight.copy_(w.T); layer.bias.copy_(b)
    return net

def same_weights(a, b): return all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))

def test_sequential_is_simple_neural_net():
    "Rung 1: with the weights of `simple_neural_net` copied in, the same scores, loss and gradients."
    params = init_mlp_params(generator=torch.Generator().manual_seed(42))
    net, (x, y) = as_sequential(params), data(16)
    torch.testing.assert_close(net(x), simple_neural_net(x, params), rtol=0, atol=1e-4)
    ours, theirs = cross_entropy_loss(simple_neural_net(x, params), y), cross_entropy_loss(net(x), y)
    torch.testing.assert_close(ours, theirs)
    ours.backward(); theirs.backward()
    torch.testing.assert_close(net[0].weight.grad, params[0].grad.T, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(net[2].bias.grad, params[3].grad, rtol=1e-4, atol=1e-6)
    assert [list(p.shape) for p in net.parameters()] == [[64, 784], [64], [10, 64], [10]]

class BasicOptim:
    "The notebook's hand-written optimizer."
    def __init__(self, params, lr): self.params, self.lr = list(params), lr
    def step(self):
        with torch.no_grad():
            for p in self.params: p -= p.grad*self.lr
    def zero_grad(self):
        for p in self.params: p.grad = None

def steps(opt_func, lr, n=5, zero=True):
    "`n` steps of `mlp()` with an optimizer from `opt_func`: the losses and the network."
    net, (x, y) = mlp(), data(64*n)
    opt, losses = opt_func(net.parameters(), lr), []
    for xb, yb in zip(x.split(64), y.split(64)):
        loss = F.cross_entropy(net(xb), yb)
        loss.backward(); opt.step()
        if zero: opt.zero_grad()
        losses.append(loss.item())
    return losses, net

def test_hand_optimizer_is_torch_sgd():
    "Rung 2: `BasicOptim` takes the steps of `torch.optim.SGD`: exactly at lr 1.0, to the last bits at 0.1."
    (ours, a), (theirs, b) = steps(BasicOptim, 1.), steps(torch.optim.SGD, 1.)
    assert ours == theirs and same_weights(a, b)
    (ours, a), (theirs, b) = steps(BasicOptim, 0.1), steps(torch.optim.SGD, 0.1)
    assert ours == pytest.approx(theirs, rel=1e-6)
    for p, q in zip(a.parameters(), b.parameters()): torch.testing.assert_close(p, q)

def test_train_epoch_is_torch_sgd():
    "The library's own loop (notebook 03's `train_epoch`) takes `torch.optim.SGD`'s steps."
    x, y = data(300)
    net = mlp()
    train_epoch(lambda xb, _: net(xb), list(net.parameters()), F.cross_entropy, Batches(x, y, 64, shuffle=False), 1.)
    ref = mlp()
    opt = torch.optim.SGD(ref.parameters(), 1.)
    for xb, yb in zip(x.split(64), y.split(64)):
        F.cross_entropy(ref(xb), yb).backward(); opt.step(); opt.zero_grad()
    assert same_weights(net, ref)

def test_gradients_accumulate_without_zero_grad():
    "Why `zero_grad`: `backward` adds to `.grad`, so without it every step uses the sum of all gradients so far."
    net, (x, y) = mlp(), data(64)
    F.cross_entropy(net(x), y).backward()
    once = net[2].bias.grad.clone()
    F.cross_entropy(net(x), y).backward()
    torch.testing.assert_close(net[2].bias.grad, 2*once)
    (zeroed, _), (kept, _) = steps(torch.optim.SGD, 1., zero=True), steps(torch.optim.SGD, 1., zero=False)
    assert zeroed[:2] == kept[:2] and zeroed[2:] != kept[2:] # the same until the second step adds the first gradient again

def test_batches_and_torch_dataloader():
    "Rung 3: `Batches` gives PyTorch's batches unshuffled; shuffled, PyTorch's order is `randperm` after one draw."
    # every loader gets a generator: without one, even an unshuffled PyTorch loader draws from the global generator
    x, y = data(300)
    for (xa, ya), (xt, yt) in zip(Batches(x, y, 64, shuffle=False), DataLoader(TensorDataset(x, y), batch_size=64, generator=torch.Generator()), strict=True):
        assert torch.equal(xa, xt) and torch.equal(ya, yt)
    order = torch.cat(list(DataLoader(range(300), batch_size=64, shuffle=True, generator=torch.Generator().manual_seed(42))))
    g = torch.Generator().manual_seed(42)
    torch.empty((), dtype=torch.int64).random_(generator=g) # the seed PyTorch's loader draws for its workers
    assert torch.equal(order, torch.randperm(300, generator=g))
    ours = torch.cat([yb for _, yb in Batches(torch.arange(300), torch.arange(300), 64, generator=torch.Generator().manual_seed(42))])
    assert torch.equal(ours, torch.randperm(300, generator=torch.Generator().manual_seed(42)))

def loaders(x, y, vx, vy, bs=64):
    return (DataLoader(TensorDataset(x, y), batch_size=bs, shuffle=True, generator=torch.Generator().manual_seed(42)),
            DataLoader(TensorDataset(vx, vy), batch_size=100, generator=torch.Generator()))

@pytest.mark.slow # fastai's import alone takes 2 to 3 s
@pytest.mark.imports('fastai.vision.all') # fastai's import changes global state; the vision stack gives a learner `no_bar`
def test_learner_is_fastai_learner():
    "Rung 4: on the same model, data and order, fastai's `Learner` with its plain SGD gives our numbers and weights."
    from fastai.data.core import DataLoaders
    from fastai.learner import Learner as FastaiLearner
    from fastai.optimizer import SGD
    from fastai.metrics import accuracy
    (x, y), (vx, vy) = data(512), data(250, seed=1)
    ours = Learner(mlp(act=nn.ReLU), loaders(x, y, vx, vy), F.cross_entropy, torch.optim.SGD, lr=0.5).fit(2, show=False)
    theirs = FastaiLearner(DataLoaders(*loaders(x, y, vx, vy)), mlp(act=nn.ReLU), loss_func=F.cross_entropy, opt_func=SGD, lr=0.5, metrics=accuracy)
    with theirs.no_bar(), theirs.no_logging(): theirs.fit(2)
    assert same_weights(ours.model, theirs.model)
    assert [h['valid_loss'] for h in ours.history] == pytest.approx([v[1] for v in theirs.recorder.values], rel=1e-6)
    assert [h['metric'] for h in ours.history] == pytest.approx([v[2] for v in theirs.recorder.values], abs=1e-6)
    assert not same_weights(ours.model, mlp(act=nn.ReLU)) # it did train

def test_learner_is_the_loop():
    "Our `Learner` takes the steps of a hand-written loop, and reports exact means over items (a last batch of 50)."
    (x, y), (vx, vy) = data(300), data(250, seed=1)
    learn = Learner(mlp(), (Batches(x, y, 64, shuffle=False), Batches(vx, vy, 100, shuffle=False)), F.cross_entropy, lr=1.).fit(1, show=False)
    ref = mlp()
    opt = torch.optim.SGD(ref.parameters(), 1.)
    losses = []
    for xb, yb in zip(x.split(64), y.split(64)):
        loss = F.cross_entropy(ref(xb), yb); loss.backward(); opt.step(); opt.zero_grad()
        losses.append(loss.item()*len(yb))
    assert same_weights(learn.model, ref)
    h = learn.history[0]
    assert h['train_loss'] == pytest.approx(sum(losses)/300, rel=1e-6)
    with torch.no_grad(): out = ref(vx)
    assert h['valid_loss'] == pytest.approx(F.cross_entropy(out, vy).item(), rel=1e-5)
    assert h['metric'] == pytest.approx((out.argmax(1) == vy).float().mean().item(), abs=1e-6)
    assert set(h) == {'train_loss', 'valid_loss', 'metric', 'seconds'} and len(learn.history) == 1

def test_fit_one_cycle_is_torch_one_cycle():
    "`fit_one_cycle` steps PyTorch's `OneCycleLR` after every batch, and leaves no schedule behind."
    (x, y), (vx, vy) = data(256), data(100, seed=1)
    sgd = partial(torch.optim.SGD, momentum=0.9)
    learn = Learner(mlp(), (Batches(x, y, 64, shuffle=False), Batches(vx, vy, 100, shuffle=False)), F.cross_entropy, sgd, lr=0.2)
    learn.fit_one_cycle(2, show=False)
    ref = mlp()
    opt = sgd(ref.parameters(), 0.2)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 0.2, total_steps=8)
    for _ in range(2):
        for xb, yb in zip(x.split(64), y.split(64)):
            F.cross_entropy(ref(xb), yb).backward(); opt.step(); opt.zero_grad(); sched.step()
    assert same_weights(learn.model, ref) and learn.sched is None
    assert learn.opt.param_groups[0]['lr'] == pytest.approx(opt.param_groups[0]['lr'])

def hand_conv(img, k, padding):
    "One channel convolved with one kernel by hand: every output pixel is the patch under the kernel times it, summed."
    p, n = F.pad(img, (padding,)*4), k.shape[-1]
    return torch.tensor([[(p[i:i+n, j:j+n]*k).sum() for j in range(p.shape[1] - n + 1)] for i in range(p.shape[0] - n + 1)])

def test_small_cnn_forward():
    "Rung 7: `small_cnn`'s first convolution is the hand computation, and its forward is the functional reference."
    with seeded(0): cnn = small_cnn()
    x = torch.rand(3, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out = cnn(x)
        conv1, conv2, lin = cnn[0], cnn[3], cnn[7]
        first = conv1(x[:1])
        for c in (0, 7, 15): torch.testing.assert_close(first[0, c], hand_conv(x[0, 0], conv1.weight[c, 0], 2) + conv1.bias[c], rtol=1e-5, atol=1e-5)
        h = F.max_pool2d(F.relu(F.conv2d(x, conv1.weight, conv1.bias, padding=2)), 2)
        h = F.max_pool2d(F.relu(F.conv2d(h, conv2.weight, conv2.bias, padding=2)), 2)
        torch.testing.assert_close(out, h.flatten(1)@lin.weight.T + lin.bias, rtol=1e-5, atol=1e-5)
    assert out.shape == (3, 10) and sum(p.numel() for p in cnn.parameters()) == 28_938
    assert [list(p.shape) for p in cnn.parameters()] == [[16, 1, 5, 5], [16], [32, 16, 5, 5], [32], [10, 1568], [10]]
    with seeded(0): assert small_cnn(8, 16, 3)(x).shape == (3, 10)

def test_train_cnn_learns_and_repeats(tiny):
    "`train_cnn` on a tiny MNIST: one entry per epoch, the same weights from the same seed, other ones from another."
    m = load_mnist(tiny, show_progress=False)
    a, b, c = (train_cnn(m, epochs=2, bs=8, seed=s, show=False) for s in (42, 42, 0))
    assert len(a.history) == 2 and 0 <= a.history[-1]['metric'] <= 1
    assert same_weights(a.model, b.model) and not same_weights(a.model, c.model)
    assert a.sched is None and isinstance(a.model[0], nn.Conv2d)
