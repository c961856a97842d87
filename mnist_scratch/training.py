__all__ = ['split_train_valid', 'init_params', 'batch_accuracy', 'calc_grad', 'train_epoch', 'validate_epoch', 'accuracy', 'train_model', 'seeded', 'seed_spread']

# %% ../nbs/03_linear.ipynb #f3a00001
import contextlib, random
import numpy as np
import torch

# %% ../nbs/03_linear.ipynb #ba431b96
def split_train_valid(x, y, n_valid=10_000, seed=42):
    "Split `x`, `y` into a training and a validation part with a fixed random permutation: the honest setup."
    idx = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    return (x[idx[n_valid:]], y[idx[n_valid:]]), (x[idx[:n_valid]], y[idx[:n_valid]])

# %% ../nbs/03_linear.ipynb #6eb71d5c
def init_params(size, std=1.0, generator=None):
    "Random parameters of shape `size` (normal, std `std`, drawn from `generator`) whose gradients PyTorch tracks."
    return (torch.randn(size, generator=generator)*std).requires_grad_()

# %% ../nbs/03_linear.ipynb #82fc8bc2
def batch_accuracy(preds, yb):
    "The fraction of a batch whose largest score is at the true digit."
    return (preds.argmax(1) == yb).float().mean()

# %% ../nbs/03_linear.ipynb #ce8a0017
def calc_grad(xb, yb, model, params, loss_func):
    "Compute the loss of `model` on a batch and put its gradients in `p.grad` of every parameter."
    loss = loss_func(model(xb, params), yb)
    loss.backward()
    return loss

def train_epoch(model, params, loss_func, batches, lr):
    "One epoch of mini-batch gradient descent: a step against the gradient for every batch; returns the mean loss."
    total = 0.
    for xb, yb in batches:
        total += calc_grad(xb, yb, model, params, loss_func).item()
        with torch.no_grad():
            for p in params:
                p -= p.grad*lr
                p.grad = None # forget it: the next backward() starts a fresh one (what PyTorch's optimizers do)
    return total/len(batches)

# %% ../nbs/03_linear.ipynb #1e16255e
def validate_epoch(model, params, valid_dl):
    "The post's validation: the mean of the per-batch accuracies, rounded to 4 places."
    with torch.no_grad(): accs = [batch_accuracy(model(xb, params), yb) for xb, yb in valid_dl]
    return round(torch.stack(accs).mean().item(), 4)

# %% ../nbs/03_linear.ipynb #5b100edd
def accuracy(model, params, x, y):
    "Exact accuracy: correct predictions over all images of `x`."
    with torch.no_grad(): return (model(x, params).argmax(1) == y).float().mean().item()

# %% ../nbs/03_linear.ipynb #a683f799
def train_model(model, params, loss_func, batches, valid, epochs=40, lr=1.):
    "Train `params` of `model` for `epochs` epochs; return each epoch's mean training loss and validation accuracy."
    history = dict(loss=[], accuracy=[])
    for _ in range(epochs):
        history['loss'].append(train_epoch(model, params, loss_func, batches, lr))
        history['accuracy'].append(accuracy(model, params, *valid))
    return history

# %% ../nbs/03_linear.ipynb #f3a00004
@contextlib.contextmanager
def seeded(seed):
    "Seed Python's, NumPy's and PyTorch's global generators for the block (as fastai's `set_seed`), then restore them."
    saved = random.getstate(), np.random.get_state(), torch.get_rng_state(), torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    random.seed(seed); np.random.seed(seed % (2**32 - 1)); torch.manual_seed(seed)
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    try: yield
    finally:
        random.setstate(saved[0]); np.random.set_state(saved[1]); torch.set_rng_state(saved[2])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = saved[3:]
        if cuda is not None: torch.cuda.set_rng_state_all(cuda)

# %% ../nbs/03_linear.ipynb #d0d3bd6e
def seed_spread(run, seeds=range(1, 6)):
    "The last-epoch accuracy of `run(seed)`, which returns parameters and a history, for each of `seeds`: a tensor."
    return torch.tensor([run(seed)[1]['accuracy'][-1] for seed in seeds])