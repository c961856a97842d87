"""Reading as the reader does: JupyterLab in a real browser (the system Chromium, driven by Playwright), Run All on each
story notebook, and then no error and no warning in any cell, and every picture drawn.

It uses the data the suite was started with (CI points `MNIST_SCRATCH_DATA` at the full MNIST). Without Chromium it
skips, saying so: `apt-get install chromium` (Debian's package; `playwright install` downloads browsers and fails
offline). `MNIST_SCRATCH_SCREENSHOTS=DIR` keeps a screenshot of each notebook after Run All in DIR.
"""
import contextlib, json, os, shutil, socket, subprocess, sys, time, urllib.request, pytest
from pathlib import Path
from conftest import ROOT, ORIGINAL_ENV

CHROMIUM = shutil.which('chromium') or shutil.which('chromium-browser')
# the story notebooks, 06 with its FULL_RUN switch off as committed: small checks and the saved full run
STORY = [nb.name for nb in sorted((ROOT/'nbs').glob('0[1-9]_*.ipynb'))]
pytestmark = [pytest.mark.skipif(not CHROMIUM, reason='no Chromium here: apt-get install chromium to run the browser tests'),
              pytest.mark.timeout(900), pytest.mark.slow]

def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]

@contextlib.contextmanager
def jupyterlab(tmp_path_factory, **env):
    "JupyterLab on a free port, its root a temporary copy of the project's notebooks, `env` added; no token, no network."
    root, home = tmp_path_factory.mktemp('lab'), tmp_path_factory.mktemp('lab-home')
    shutil.copytree(ROOT/'nbs', root/'nbs', ignore=shutil.ignore_patterns('.ipynb_checkpoints'))
    shutil.copytree(ROOT/'mnist_scratch', root/'mnist_scratch') # the layout of the checkout; no notebook writes the library
    shutil.copy(ROOT/'settings.ini', root)
    tracker = home/'settings'/'@jupyterlab'/'notebook-extension'/'tracker.jupyterlab-settings'
    tracker.parent.mkdir(parents=True)
    tracker.write_text(json.dumps({'windowingMode': 'none'})) # every cell in the page, so that every picture can be checked
    news = home/'settings'/'@jupyterlab'/'apputils-extension'/'notification.jupyterlab-settings'
    news.parent.mkdir(parents=True)
    news.write_text(json.dumps({'fetchNews': 'false'})) # no "Would you like to get notified about Jupyter news?": no network
    port = free_port()
    env = dict(ORIGINAL_ENV, **env, JUPYTER_PREFER_ENV_PATH='1', JUPYTERLAB_SETTINGS_DIR=str(home/'settings'),
               JUPYTER_CONFIG_DIR=str(home/'config'), JUPYTER_RUNTIME_DIR=str(home/'runtime'))
    cmd = [str(Path(sys.executable).parent/'jupyter'), 'lab', '--no-browser', '--ip=127.0.0.1', f'--port={port}',
           f'--ServerApp.root_dir={root}', '--IdentityProvider.token=', '--ServerApp.password=',
           '--LabApp.expose_app_in_browser=True', '--LabApp.news_url=', '--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate',
           *(['--allow-root'] if hasattr(os, 'geteuid') and os.geteuid() == 0 else [])] # CI and containers run as root
    log = open(home/'lab.log', 'w')
    p = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=root)
    deadline = time.time() + 120
    while True:
        try:
            urllib.request.urlopen(f'http://127.0.0.1:{port}/api/status', timeout=2)
            break
        except OSError:
            assert p.poll() is None and time.time() < deadline, (home/'lab.log').read_text()[-3000:]
            time.sleep(0.5)
    try: yield port
    finally:
        p.terminate()
        try: p.wait(30)
        except subprocess.TimeoutExpired: p.kill()
        log.close()

@pytest.fixture(scope='module')
def lab(tmp_path_factory):
    with jupyterlab(tmp_path_factory) as port: yield port

@pytest.fixture(scope='module')
def browser():
    from playwright.sync_api import sync_playwright
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
                               '--disable-background-networking', '--disable-component-update', '--disable-sync'])
        yield b
        b.close()

NOTEBOOK = "window.jupyterapp.shell.currentWidget"
KERNEL_READY = f"() => {{ const w = window.jupyterapp && {NOTEBOOK}; const k = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel; return !!k && k.status === 'idle' && w.content.widgets.length > 0; }}"
# done: the kernel is idle and every code cell ran, or a cell failed (Run All stops there)
DONE = f"""() => {{ const w = {NOTEBOOK}; const code = w.content.widgets.filter(c => c.model.type === 'code');
  const outs = code.flatMap(c => c.model.outputs.toJSON());
  return w.sessionContext.session.kernel.status === 'idle' &&
         (code.every(c => c.model.executionCount !== null) || outs.some(o => o.output_type === 'error')); }}"""
OUTPUTS = f"() => {NOTEBOOK}.content.widgets.filter(c => c.model.type === 'code').flatMap(c => c.model.outputs.toJSON())"
IMAGES = "() => [...document.querySelectorAll('.jp-OutputArea-output img')].map(i => [i.complete, i.naturalWidth, i.getBoundingClientRect().width])"

@pytest.mark.parametrize('nb', STORY)
def test_run_all_in_jupyterlab(lab, browser, nb, record_property):
    page = browser.new_page(viewport={'width': 1400, 'height': 1000})
    try:
        page.goto(f'http://127.0.0.1:{lab}/lab/tree/nbs/{nb}?reset')
        page.wait_for_function(KERNEL_READY, timeout=120_000)
        assert page.locator('.jp-Dialog').count() == 0, 'a dialog (Select Kernel?) came up on opening the notebook'
        # the kernel is the project's .venv (make setup installs it there, and JUPYTER_PREFER_ENV_PATH puts it first):
        # its command is this environment's Python (its display name is just `python3`, as in every notebook)
        spec = page.evaluate(f"() => {NOTEBOOK}.sessionContext.session.kernel.name")
        argv = page.evaluate("() => window.jupyterapp.serviceManager.kernelspecs.specs.kernelspecs.python3.argv")
        assert spec == 'python3' and Path(argv[0]).is_relative_to(sys.prefix), argv
        # opening changed nothing: once the kernel's spec and language are in, the notebook is not marked modified
        assert page.evaluate(f"""async () => {{ const w = {NOTEBOOK}, k = w.sessionContext.session.kernel;
            await k.info; await k.spec; await new Promise(r => setTimeout(r, 1000)); return w.context.model.dirty; }}""") is False, \
            page.evaluate(f"() => {NOTEBOOK}.context.model.toJSON().metadata")
        start = time.perf_counter()
        page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
        page.wait_for_function(f"() => {NOTEBOOK}.content.widgets.some(c => c.model.type === 'code' && c.model.executionCount !== null)", timeout=120_000)
        page.wait_for_function(DONE, timeout=900_000, polling=1000)
        seconds = time.perf_counter() - start
        record_property('run_all_seconds', round(seconds, 1))
        print(f'\n{nb}: Run All in {seconds:.1f} s')
        outs = page.evaluate(OUTPUTS)
        errors = [f"{o['ename']}: {o['evalue']}" for o in outs if o['output_type'] == 'error']
        assert not errors, errors
        stderr = [''.join(o['text'])[:300] for o in outs if o.get('name') == 'stderr']
        assert not stderr, stderr # no warnings for the reader either
        pngs = sum('image/png' in o.get('data', {}) for o in outs)
        page.wait_for_function("() => [...document.querySelectorAll('.jp-OutputArea-output img')].every(i => i.complete)", timeout=30_000)
        imgs = page.evaluate(IMAGES)
        assert pngs > 0 and len(imgs) == pngs, (pngs, len(imgs))
        assert all(done and w > 0 and shown > 0 for done, w, shown in imgs), imgs
        if os.environ.get('MNIST_SCRATCH_SCREENSHOTS'):
            page.screenshot(path=str(Path(os.environ['MNIST_SCRATCH_SCREENSHOTS'])/f'{Path(nb).stem}.png'))
    finally: page.close()
