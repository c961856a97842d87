"Every exercise check: the solution passes, a blank cell and the usual mistakes fail with a sentence, never a traceback."
import pytest, torch
from torch import nn
from mnist_scratch import exercises as ex

# an optimizer's first step imports torch._dynamo, which adds warning filters: imported before the state is taken
pytestmark = pytest.mark.imports('torch._dynamo')

def blank(*args): ... # a "Your turn" cell as the clean notebook gives it

def sgd_step(params, lr):
    for p in params: p.data -= lr*p.grad; p.grad.zero_()
def sgd_no_zero(params, lr):
    for p in params: p.data -= lr*p.grad
def sgd_uphill(params, lr):
    for p in params: p.data += lr*p.grad; p.grad.zero_()

class Linear(nn.Module):
    def __init__(self, n_in, n_out):
        super().__init__()
        self.w, self.b = nn.Parameter(torch.randn(n_in, n_out)), nn.Parameter(torch.zeros(n_out))
    def forward(self, x): return x@self.w + self.b
class PlainTensors(Linear):
    def __init__(self, n_in, n_out):
        nn.Module.__init__(self)
        self.w, self.b = torch.randn(n_in, n_out), torch.zeros(n_out)
class Transposed(Linear):
    def __init__(self, n_in, n_out):
        nn.Module.__init__(self)
        self.w, self.b = nn.Parameter(torch.randn(n_out, n_in)), nn.Parameter(torch.zeros(n_out))
    def forward(self, x): return x@self.w.T + self.b

def train_epoch(model, batches, opt, loss_func):
    for xb, yb in batches: loss_func(model(xb), yb).backward(); opt.step(); opt.zero_grad()
def epoch_no_zero_grad(model, batches, opt, loss_func):
    for xb, yb in batches: loss_func(model(xb), yb).backward(); opt.step()
def epoch_step_first(model, batches, opt, loss_func):
    for xb, yb in batches: opt.step(); loss_func(model(xb), yb).backward(); opt.zero_grad()

def com(img):
    h, w = img.shape
    return (img*torch.arange(h)[:, None]).sum()/img.sum(), (img*torch.arange(w)).sum()/img.sum()

# check: (solution, [(mistake, what the learner must be told), ...])
CASES = {
    'check_stack_images': (lambda ims: torch.stack(ims).float()/255, [
        (lambda ims: torch.stack(ims).float(), 'go up to 255; expected 0..1'),
        (lambda ims: torch.cat(ims).float()/255, 'has shape [84, 28], expected [3, 28, 28]')]),
    'check_mnist_distance': (lambda a, b: (a - b).abs().mean((-1, -2)), [
        (lambda a, b: (a - b).abs().mean(), 'has shape [], expected [5]'),
        (lambda a, b: (a - b).abs(), 'has shape [5, 28, 28], expected [5]'),
        (lambda a, b: (a - b).mean((-1, -2)), '5 of 5 values differ')]),
    'check_accuracy': (lambda p, t: (p == t).float().mean(), [
        (lambda p, t: (p == t).sum(), 'the number of correct predictions; expected 0.7'),
        (lambda p, t: (p == t).mean(), 'raised RuntimeError: mean(): could not infer output dtype')]),
    'check_linear': (lambda x, w, b: x@w + b, [
        (lambda x, w, b: x@w, '40 of 40 values differ'),
        (lambda x, w, b: x@w.T + b, 'raised RuntimeError: mat1 and mat2 shapes cannot be multiplied')]),
    'check_sgd_step': (sgd_step, [
        (sgd_no_zero, 'the gradients were not reset'),
        (sgd_uphill, 'moved *up* the slope')]),
    'check_softmax': (lambda x: x.exp()/x.exp().sum(-1, keepdim=True), [
        (lambda x: x.exp()/x.exp().sum(), 'all 40 probabilities add up to 1 together'),
        (lambda x: x.exp()/x.exp().sum(-1), 'raised RuntimeError: The size of tensor a')]),
    'check_cross_entropy': (lambda s, t: -s.softmax(-1)[range(len(t)), t].log().mean(), [
        (lambda s, t: s.softmax(-1)[range(len(t)), t].log().mean(), 'below zero: the minus sign'),
        (lambda s, t: -s.softmax(-1)[range(len(t)), t].log(), 'has shape [6], expected []')]),
    'check_two_layer': (lambda x, w1, b1, w2, b2: (x@w1 + b1).sigmoid()@w2 + b2, [
        (lambda x, w1, b1, w2, b2: (x@w1 + b1)@w2 + b2, 'no nonlinearity'),
        (lambda x, w1, b1, w2, b2: (x@w1 + b1).sigmoid()@w2, '40 of 40 values differ')]),
    'check_linear_module': (Linear, [
        (PlainTensors, 'has no parameters: wrap the weights and bias in `nn.Parameter`'),
        (Transposed, 'shapes [[10], [10, 784]], expected [784, 10] and [10]')]),
    'check_train_epoch': (train_epoch, [
        (epoch_no_zero_grad, 'the weights after one epoch of 4 batches: 200 of 200 values differ'),
        (epoch_step_first, 'is `opt.step()` called, after `backward()`')]),
    'check_conv_pixel': (lambda img, k, r, c: (img[r-1:r+2, c-1:c+2]*k).sum(), [
        (lambda img, k, r, c: (img[r:r+3, c:c+3]*k).sum(), 'conv_pixel at row 1, column 1: 1 of 1 values differ'),
        (lambda img, k, r, c: img[r-1:r+2, c-1:c+2]*k, 'has shape [3, 3], expected []')]),
    'check_centre_of_mass': (com, [
        (lambda img: com(img)[::-1], 'you gave (column, row)'),
        (lambda img: ((img*torch.arange(img.shape[0])[:, None]).sum(), (img*torch.arange(img.shape[1])).sum()), '2 of 2 values differ')]),
}

def test_every_check_is_tested():
    assert sorted(CASES) == sorted(n for n in ex.__all__ if n.startswith('check_'))

def verdict_of(capsys, name, answer):
    "Whether the check passed `answer`, and the one line it printed (it returns nothing: a notebook shows only the line)."
    assert getattr(ex, name)(answer) is None
    out = capsys.readouterr().out
    assert out.count('\n') == 1 and out[:2] in ('✓ ', '✗ '), out # one line, no traceback
    return out.startswith('✓ '), out

@pytest.mark.parametrize('name', CASES)
def test_the_solution_passes(capsys, name):
    ok, out = verdict_of(capsys, name, CASES[name][0])
    assert ok is True and out.startswith('✓ '), out

@pytest.mark.parametrize('name', CASES)
def test_a_blank_cell_fails_with_a_sentence(capsys, name):
    ok, out = verdict_of(capsys, name, blank)
    assert ok is False and out.startswith('✗ ') and 'Hint: ' in out and "see '" in out, out

@pytest.mark.parametrize('name, i', [(n, i) for n, (_, ms) in CASES.items() for i in range(len(ms))])
def test_each_usual_mistake_is_named(capsys, name, i):
    mistake, told = CASES[name][1][i]
    ok, out = verdict_of(capsys, name, mistake)
    assert ok is False and told in out, out

def test_not_a_function_is_a_sentence(capsys):
    ok, out = verdict_of(capsys, 'check_softmax', torch.ones(3))
    assert ok is False and 'expected a function, got Tensor' in out

@pytest.mark.parametrize('got, want, told', [
    (None, torch.ones(2), 'is None: is a `return` missing?'),
    ([1., 1.], torch.ones(2), 'is a list, not a tensor'),
    (torch.ones(2, 1), torch.ones(2), 'has shape [2, 1], expected [2]'),
    (torch.tensor([1., float('nan')]), torch.ones(2), '1 of 2 values differ; the first at [1] is nan'),
    (torch.tensor([1, 2]), torch.tensor([1., 2.]), None), # an integer answer with the right values is right
    (3, torch.tensor(3.), None)])
def test_difference(got, want, told):
    d = ex.difference(got, want, 'x')
    assert d is None if told is None else told in d

def test_checks_leave_the_global_generator_alone():
    before = torch.random.get_rng_state()
    ex.check_linear_module(Linear); ex.check_train_epoch(train_epoch)
    assert torch.equal(torch.random.get_rng_state(), before)

def test_every_hint_points_to_a_section_that_exists(capsys):
    "Each check's hint names a heading of a story notebook: the section a learner should reread."
    import json, re
    from pathlib import Path
    nbs = Path(__file__).parent.parent/'nbs'
    for name in CASES:
        getattr(ex, name)(blank)
        out = capsys.readouterr().out
        heading, nb = re.search(r"see '([^']+)' in (\d\d_\w+)\)", out).groups()
        cells = json.loads((nbs/f'{nb}.ipynb').read_text())['cells']
        heads = {l.lstrip('#').strip() for c in cells if c['cell_type'] == 'markdown' for l in ''.join(c['source']).splitlines() if l.startswith('#')}
        assert heading in heads, (name, nb, heading)

# --- the exercises in the notebooks, their solutions, and the clean notebooks ---

import contextlib, io, json, re, sys
from pathlib import Path
ROOT = Path(__file__).parent.parent

def code_cells(nb): return [''.join(c['source']) for c in json.loads(Path(nb).read_text())['cells'] if c['cell_type'] == 'code']
def checks_called(src): return re.findall(r'^(check_\w+)\(', src, re.M)

def story(): return sorted((ROOT/'nbs').glob('0[1-7]_*.ipynb'))

def test_every_story_notebook_has_exercises_and_every_check_is_used():
    used = {nb.stem: [c for s in code_cells(nb) for c in checks_called(s)] for nb in story()}
    assert all(used.values()), [nb for nb, c in used.items() if not c]
    assert sorted(c for cs in used.values() for c in cs) == sorted(CASES)

def test_the_solutions_pass_every_check():
    "Each answers page runs its solutions through the checks of its notebook, and every one passes."
    pages = sorted((ROOT/'nbs'/'answers').glob('0*.ipynb'))
    assert [p.name for p in pages] == [nb.name for nb in story()]
    for page in pages:
        src = '\n'.join(code_cells(page))
        out = io.StringIO()
        with contextlib.redirect_stdout(out): exec(compile(src, str(page), 'exec'), {})
        lines = out.getvalue().splitlines()
        called = checks_called(src)
        assert len(called) == len([l for l in lines if l.startswith('✓ ')]) and not [l for l in lines if l.startswith('✗')], (page.name, lines)
        assert called == [c for s in code_cells(ROOT/'nbs'/page.name) for c in checks_called(s)], page.name

def test_the_clean_notebooks_are_up_to_date():
    "`clean/` is what `make clean-nbs` writes from the story notebooks now: regenerate it if this fails."
    sys.path.insert(0, str(ROOT/'docs'))
    try: import clean
    finally: sys.path.pop(0)
    want = clean.clean_texts()
    got = {p.name: p.read_text() for p in (ROOT/'clean').glob('*.ipynb')}
    assert sorted(got) == sorted(want), 'run `make clean-nbs`'
    stale = [n for n in want if got[n] != want[n]]
    assert not stale, f'out of date: {stale}; run `make clean-nbs`'

def test_a_clean_notebook_keeps_the_code_and_the_exercises_and_drops_outputs_and_prose():
    for nb in story():
        clean_cells = json.loads((ROOT/'clean'/nb.name).read_text())['cells']
        assert code_cells(ROOT/'clean'/nb.name) == code_cells(nb) # every code cell, in order
        assert not any(c.get('outputs') for c in clean_cells)
        md = [''.join(c['source']) for c in clean_cells if c['cell_type'] == 'markdown']
        story_md = [''.join(c['source']) for c in json.loads(nb.read_text())['cells'] if c['cell_type'] == 'markdown']
        assert [m for m in story_md if m.startswith('**Your turn')] == [m for m in md if m.startswith('**Your turn')]
        assert any(m.startswith('## Questionnaire') for m in md)
        prose = [l for m in md if not m.startswith(('**Your turn', '## Questionnaire', '## Further research', '> The clean version'))
                 for l in m.splitlines() if l and not l.startswith(('#', 'Run this notebook online:'))]
        assert not prose, (nb.name, prose[:3])
        links = [l for m in md for l in m.splitlines() if l.startswith('Run this notebook online:')]
        assert len(links) == 1 and f'/blob/main/clean/{nb.name}' in links[0] and '/nbs/' not in links[0], (nb.name, links) # Colab opens the clean copy
