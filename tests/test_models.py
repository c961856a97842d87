"`_finite`, the check that refuses a diverged model, reads a tensor in memory order (issue 29): it must still see every number."
import itertools, pytest, torch
from mnist_scratch.models import _finite

LAYOUTS = dict(contiguous=lambda t: t, channels_last=lambda t: t.contiguous(memory_format=torch.channels_last),
               transposed=lambda t: t.transpose(0, 3), every_other=lambda t: t[:, ::2], size_one=lambda t: t[:1, :, :1])

@pytest.mark.timeout(10)
@pytest.mark.parametrize('layout', LAYOUTS)
@pytest.mark.parametrize('bad', [float('nan'), float('inf'), float('-inf')])
def test_finite_sees_a_bad_number_anywhere_in_any_layout(layout, bad):
    "One bad number at any position of a tensor of these strides is found; none found means none there."
    fresh = lambda: LAYOUTS[layout](torch.randn(4, 6, 3, 3, generator=torch.Generator().manual_seed(0)))
    assert _finite(fresh())
    shape = fresh().shape
    for idx in itertools.product(*map(range, shape)):
        t = fresh()
        t[idx] = bad # written through the view: its strides stay those of the layout
        assert not _finite(t), (layout, idx)

def test_finite_of_no_numbers_and_of_integers():
    assert _finite(torch.zeros(0, 3)) and _finite(torch.tensor([1, 2], dtype=torch.int64))
