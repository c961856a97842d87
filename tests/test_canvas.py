"""Drawing on notebook 07's canvas as a reader does: JupyterLab in a real browser (the system Chromium, driven by
Playwright), Run All, then a 7 drawn with the mouse on the `DigitPad`; every model must answer 7. **Clear** wipes the
drawing and the answers, and a 1 drawn next is read as a 1.

The models are made here, small and fast: `linear-ce` and `mlp` trained for 3 epochs on the real MNIST, which the
suite was started with (CI points `MNIST_SCRATCH_DATA` at the full MNIST; without it the test skips, saying so). The
JupyterLab server, and so the notebook's kernel, finds them through `MNIST_SCRATCH_MODELS`.

- `MNIST_SCRATCH_CANVAS_MODELS=DIR` uses the models already saved in DIR (`results/models` after
  `make reproduce`) instead of training small ones. Every model must then answer with a digit, and the ones whose
  recorded test accuracy is 90% or more must read both digits right (the linear models trained with sigmoid or
  softmax, at 39% and 70%, are not expected to).
- `MNIST_SCRATCH_SCREENSHOTS=DIR` keeps a screenshot of the pad after the 7 is drawn, as `DIR/07_canvas.png`: the
  canvas, the 28x28 digit the models see, and their probabilities as bars (the picture of the docs).

Without Chromium it skips, saying so: `apt-get install chromium` (`playwright install` downloads browsers and fails
offline).
"""
import json, os, time, pytest, torch
from pathlib import Path
from conftest import ORIGINAL_ENV, REAL_DATA
from test_lab import CHROMIUM, NOTEBOOK, KERNEL_READY, DONE, OUTPUTS, jupyterlab, browser # browser: the fixture

pytestmark = [pytest.mark.skipif(not CHROMIUM, reason='no Chromium here: apt-get install chromium to run the browser tests'),
              pytest.mark.timeout(900), pytest.mark.slow]

NB = '07_your_digits.ipynb'
PAD_CELL = '#| browser\nDigitPad(models)' # the cell that shows the canvas
SIZE = 280 # the pad's canvas, in its own pixels
SEVEN = [(50, 50), (230, 50), (110, 250)] # one stroke: the bar, then the stem
ONE = [(140, 40), (140, 250)]
GOOD = 0.9 # models of the saved set that must read the digits right: 90% or more on MNIST's test set

@pytest.fixture(scope='module')
def models(tmp_path_factory):
    "The folder of the models to show: `$MNIST_SCRATCH_CANVAS_MODELS`, or `linear-ce` and `mlp` trained here for 3 epochs."
    if not REAL_DATA: pytest.skip('no real MNIST: set MNIST_SCRATCH_DATA to the full MNIST (CI does) to run the canvas test')
    if folder := ORIGINAL_ENV.get('MNIST_SCRATCH_CANVAS_MODELS'):
        folder = Path(folder).resolve()
        assert list(folder.glob('*.pt')), f'MNIST_SCRATCH_CANVAS_MODELS={folder}: no saved models (*.pt) there'
        return folder, False
    from mnist_scratch.report import reproduce
    out = tmp_path_factory.mktemp('canvas-models')
    reproduce(['linear-ce', 'mlp'], data=REAL_DATA, out=out, show_progress=False, epochs=3)
    return out/'models', True

@pytest.fixture(scope='module')
def lab(models, tmp_path_factory):
    "JupyterLab as in test_lab.py, its kernels given the models through `MNIST_SCRATCH_MODELS`."
    with jupyterlab(tmp_path_factory, MNIST_SCRATCH_MODELS=str(models[0])) as port: yield port

# marks the pad's cell, so that Playwright can find it
MARK_PAD = f"""() => {{ const cells = {NOTEBOOK}.content.widgets.filter(c => c.model.type === 'code' &&
  c.model.sharedModel.getSource().trim() === {json.dumps(PAD_CELL)});
  cells.forEach(c => c.node.setAttribute('data-digitpad', '')); return cells.length; }}"""
INK = "c => { const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; let n = 0; for (let i = 3; i < d.length; i += 4) n += d[i] > 0; return n; }"

def draw(page, canvas, points, steps=12):
    "Draw one stroke through `points` (in the canvas's own pixels) with the mouse: press, move in small steps, release."
    box = canvas.bounding_box()
    at = lambda x, y: (box['x'] + x * box['width'] / SIZE, box['y'] + y * box['height'] / SIZE)
    page.mouse.move(*at(*points[0]))
    page.mouse.down()
    for p in points[1:]: page.mouse.move(*at(*p), steps=steps)
    page.mouse.up()

def answers(pad):
    "Each model's top digit, `{model id: digit}`, from the pad's table of predictions once it is there."
    pad.locator('.digit-predictions').wait_for(timeout=60_000)
    head, *lines = pad.locator('.digit-predictions').inner_text().strip().splitlines()
    assert head.split() == ['model', 'top', 'three', 'likeliest'], head
    return {line.split()[0]: int(line.split()[1]) for line in lines}

def test_draw_digits_on_the_canvas(models, lab, browser, record_property):
    folder, trained_here = models
    accuracy = {fn.stem: torch.load(fn, weights_only=True)['info'].get('accuracy', 0) for fn in sorted(folder.glob('*.pt'))}
    must_read = set(accuracy) if trained_here else {k for k, a in accuracy.items() if a >= GOOD}
    assert must_read, f'{folder}: no model with {GOOD:.0%} on the test set to check the answers with'
    page = browser.new_page(viewport={'width': 1400, 'height': 1000})
    try:
        start = time.perf_counter()
        page.goto(f'http://127.0.0.1:{lab}/lab/tree/nbs/{NB}?reset')
        page.wait_for_function(KERNEL_READY, timeout=120_000)
        page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
        page.wait_for_function(f"() => {NOTEBOOK}.content.widgets.some(c => c.model.type === 'code' && c.model.executionCount !== null)", timeout=120_000)
        page.wait_for_function(DONE, timeout=600_000, polling=1000)
        record_property('run_all_seconds', round(time.perf_counter() - start, 1))
        outs = page.evaluate(OUTPUTS)
        errors = [f"{o['ename']}: {o['evalue']}" for o in outs if o['output_type'] == 'error']
        assert not errors, errors
        assert page.evaluate(MARK_PAD) == 1, f'no single cell {PAD_CELL!r} in {NB}'

        pad = page.locator('[data-digitpad] .jp-OutputArea-output')
        canvas = pad.locator('canvas').filter(visible=True)
        canvas.wait_for(timeout=60_000) # the widget is drawn
        assert canvas.count() == 1, canvas.count()
        canvas.scroll_into_view_if_needed()
        box = canvas.bounding_box()
        assert abs(box['width'] - SIZE) <= 1 and abs(box['height'] - SIZE) <= 1, box # 280x280 CSS px: mouse and drawing agree
        assert 'Draw a digit' in pad.inner_text() and canvas.evaluate(INK) == 0

        draw(page, canvas, SEVEN)
        got = answers(pad)
        assert set(got) == set(accuracy), (got, accuracy) # one line per saved model
        assert {k: got[k] for k in must_read} == {k: 7 for k in must_read}, got
        assert canvas.evaluate(INK) > 2000 # the reader sees the 7 they drew
        chart = pad.locator('.widget-output img')
        chart.wait_for(timeout=60_000) # the 28x28 digit and the bars
        page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=chart.element_handle(), timeout=30_000)
        if os.environ.get('MNIST_SCRATCH_SCREENSHOTS'):
            shots = Path(os.environ['MNIST_SCRATCH_SCREENSHOTS'])
            shots.mkdir(parents=True, exist_ok=True)
            pad.locator('.widget-hbox').first.screenshot(path=str(shots/'07_canvas.png'))

        pad.get_by_role('button', name='Clear').click()
        pad.get_by_text('Draw a digit').wait_for(timeout=30_000)
        pad.locator('.digit-predictions').wait_for(state='detached', timeout=30_000)
        chart.wait_for(state='detached', timeout=30_000)
        page.wait_for_function("c => { const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; return d.every((v, i) => i % 4 != 3 || v == 0); }",
                               arg=canvas.element_handle(), timeout=30_000) # the canvas is blank again

        draw(page, canvas, ONE)
        got = answers(pad)
        assert {k: got[k] for k in must_read} == {k: 1 for k in must_read}, got
        seconds = time.perf_counter() - start
        record_property('seconds', round(seconds, 1))
        print(f'\n{NB}: Run All, a 7 and a 1 drawn in {seconds:.1f} s; answers {got}')
    finally: page.close()
