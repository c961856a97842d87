"The linear epoch's batches gathered into one buffer (issue 29, appendix 94): the same weights as before, bit for bit."
import pytest, torch
from mnist_scratch.fast import Batches, by_columns, linear_ce_epoch

def epoch_before(params, batches, lr):
    "linear_ce_epoch as it was before issue 29, over batches as they were then: the reference to match bit for bit."
    w, b = (p.detach() for p in params)
    eye, total = torch.eye(w.shape[1]), torch.zeros(())
    for xb, yb in batches:
        logp = torch.log_softmax(torch.addmm(b[:, None], w.T, xb.T), 0)
        t = eye.index_select(1, yb)
        total -= (logp*t).sum()/len(yb)
        grad = logp.exp_().sub_(t)
        w.addmm_(xb.T, grad.T, alpha=-lr/len(yb))
        b.sub_(grad.sum(1), alpha=lr/len(yb))
    return total.item()/len(batches)

@pytest.mark.parametrize('bs, lr', [(64, 1.), (100, 5.)]) # 64: a last batch of 600 % 64 = 24 rows, a slice of the buffer
def test_fast_epoch_is_bit_identical_to_the_previous_one(bs, lr):
    "Same seed, same data: linear_ce_epoch over the buffered batches ends at exactly the previous code's weights and loss."
    g = torch.Generator().manual_seed(0)
    x, y = (torch.rand(600, 784, generator=g) < 0.5).float(), torch.randint(0, 10, (600,), generator=g) # inputs of 0 and 1, as many pixels
    w, b = torch.randn(784, 10, generator=g), torch.randn(10, generator=g) # the bench's start
    start = lambda: (by_columns(w), b.clone().requires_grad_())
    order = lambda reuse: Batches(x, y, bs, generator=torch.Generator().manual_seed(1), reuse=reuse)
    before, after = start(), start()
    loss_before, loss_after = epoch_before(before, order(False), lr), linear_ce_epoch(after, order(True), lr)
    assert torch.equal(after[0], before[0]) and torch.equal(after[1], before[1]) and loss_after == loss_before
    assert not torch.equal(after[0], w) # it trained

def test_reused_batches_are_the_same_batches():
    "`reuse=True` yields the same rows in the same order, each batch a view of one buffer that the next overwrites."
    x, y = torch.arange(70.).reshape(35, 2), torch.arange(35)
    fresh = [(xb.clone(), yb) for xb, yb in Batches(x, y, 8, generator=torch.Generator().manual_seed(2))]
    seen, ptrs = [], set()
    for xb, yb in Batches(x, y, 8, generator=torch.Generator().manual_seed(2), reuse=True):
        seen.append((xb.clone(), yb)); ptrs.add(xb.data_ptr())
    assert len(seen) == len(fresh) == 5 and len(ptrs) == 1 and seen[-1][0].shape == (3, 2)
    assert all(torch.equal(a, c) and torch.equal(b, d) for (a, b), (c, d) in zip(seen, fresh))
    assert len(list(Batches(x[:3], y[:3], 8, shuffle=False, reuse=True))) == 1 # fewer rows than a batch: a buffer of 3 rows
