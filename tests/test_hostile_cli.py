"Hostile and unlucky uses of the command line (issue 24): diverged runs, strict JSON, odd terminals, pipes, Ctrl-C, `~`, FIFOs."
import io, json, os, pwd, signal, subprocess, sys, time, warnings, numpy as np, pytest, torch
from pathlib import Path
from conftest import ENTRY, digit_image, write_png
from mnist_scratch.cli import main
from mnist_scratch.models import TrainedModel, save_model

def strict_json(text):
    "Parse `text` as a strict parser would (JavaScript's JSON.parse, say): a bare NaN or Infinity is an error."
    def refuse(c): raise ValueError(f'not JSON: {c}')
    return json.loads(text, parse_constant=refuse)

def cli(*args, env=None, **kwargs):
    "Start the installed command (through its entry point) as a real process, with `env` changed."
    return subprocess.Popen([sys.executable, '-c', ENTRY, *map(str, args)], env={**os.environ, **(env or {})}, **kwargs)

DIVERGING = ['--epochs', '1', '--bs', '8', '--lr', '1e37'] # mlp, 4 steps on the tiny data: its weights overflow to NaN in epoch 1

# --- 6. a run that diverges says so, saves no model, writes strict JSON and exits with 1 ---

@pytest.mark.timeout(60)
def test_diverged_run_is_reported_not_saved_and_exits_1(tiny, tmp_path, capsys):
    out = tmp_path/'out'
    assert main(['reproduce', '--only', 'mlp,baseline-mse', '--data', str(tiny), '--out', str(out), *DIVERGING]) == 1
    std = capsys.readouterr()
    assert 'mlp: DIVERGED at epoch 1; its model was not saved\n' in std.err
    assert std.err.splitlines()[-1] == ('mnist-scratch: error: mlp diverged at epoch 1 with lr 1e+37 (its training loss '
        'or weights became NaN or infinite): its numbers in results.json are marked "diverged" and its model was not saved; '
        'run it again with a smaller --lr')
    assert 'DIVERGED at epoch 1: do not trust these numbers' in std.out and 'results written to' in std.out
    res = strict_json((out/'results.json').read_text()) # NaN losses are written as null
    e = res['experiments']
    assert res['schema'] == 5 and e['mlp']['diverged'] == 1 and e['mlp']['loss'] == [None]
    assert e['baseline-mse']['diverged'] is None and e['baseline-mse']['accuracy'] == 1.0 # the others are still written
    assert '(diverged at epoch 1)' in (out/'results.md').read_text()
    assert not (out/'models').exists() # predict is never offered NaN weights

@pytest.mark.timeout(60)
def test_diverged_run_keeps_the_earlier_model(tiny, tmp_path, capsys):
    out = tmp_path/'out'
    params = [torch.zeros(784, 64), torch.zeros(64), torch.zeros(64, 10), torch.zeros(10)]
    save_model(TrainedModel('mlp', 'simple_neural_net', params), out/'models'/'mlp.pt')
    before = (out/'models'/'mlp.pt').read_bytes() # a model that an earlier run saved
    assert main(['reproduce', '--only', 'mlp', '--data', str(tiny), '--out', str(out), *DIVERGING]) == 1
    assert f'mlp: DIVERGED at epoch 1; its model was not saved; {out}/models/mlp.pt is still the model of an earlier run' \
        in capsys.readouterr().err
    assert (out/'models'/'mlp.pt').read_bytes() == before # the working model of the earlier run: nothing lost

@pytest.mark.timeout(30)
def test_json_text_is_strict():
    from mnist_scratch.report import json_text
    o = dict(loss=[1.5, float('nan'), float('inf'), -float('inf')], nested=[dict(x=np.float64('nan'))], n=3)
    assert strict_json(json_text(o)) == dict(loss=[1.5, None, None, None], nested=[dict(x=None)], n=3)
    with pytest.raises(ValueError): strict_json(json.dumps(o)) # the check itself: Python's default is not strict

# --- 11. a standard output that is not UTF-8 ---

def ascii_stdout(monkeypatch):
    "A standard output that can write ASCII only, and raises on anything else unless told otherwise."
    buf = io.BytesIO()
    monkeypatch.setattr(sys, 'stdout', io.TextIOWrapper(buf, encoding='ascii'))
    return buf

@pytest.mark.timeout(60)
def test_list_and_reproduce_print_on_an_ascii_stdout(tiny, tmp_path, monkeypatch):
    buf = ascii_stdout(monkeypatch)
    assert main(['list']) == 0
    assert main(['reproduce', '--only', 'baseline-mae', '--data', str(tiny), '--out', str(tmp_path/'out')]) == 0
    sys.stdout.flush()
    text = buf.getvalue().decode('ascii')
    assert 'baseline-mae    pixel-mean baseline, MAE  02_baseline      \\u2014  \\u2014' in text # `—` as an escape
    assert 'results written to' in text
    assert sys.stdout.errors == 'strict' # the stream is given back as it was

@pytest.mark.parametrize('env', [{'PYTHONIOENCODING': 'latin-1'}, {'PYTHONUTF8': '0', 'LC_ALL': 'C', 'LANG': 'C', 'PYTHONIOENCODING': ''}],
                         ids=['latin-1', 'C-locale'])
@pytest.mark.timeout(120)
@pytest.mark.slow
def test_commands_print_on_a_stdout_that_is_not_utf8(tiny, tmp_path, env):
    for args in (['list'], ['reproduce', '--only', 'baseline-mae', '--data', tiny, '--out', tmp_path/'out']):
        p = cli(*args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        out, err = p.communicate(timeout=100)
        assert p.returncode == 0 and b'Traceback' not in err, err
        assert b'\\u2014' in out

# --- 15. pipes, Ctrl-C, `~`, help that applies ---

class ClosedPipe(io.RawIOBase):
    "The write end of a pipe whose reader has gone (`| head -1`)."
    def writable(self): return True
    def write(self, b): raise BrokenPipeError(32, 'Broken pipe')

@pytest.mark.timeout(30)
def test_closed_pipe_ends_quietly_in_process(monkeypatch, capsys):
    capsys.readouterr()
    monkeypatch.setattr(sys, 'stdout', io.TextIOWrapper(ClosedPipe()))
    assert main(['list']) == 141
    assert capsys.readouterr().err == ''

@pytest.mark.timeout(120)
@pytest.mark.slow
def test_predict_into_a_closed_pipe_ends_quietly(tmp_path):
    models = tmp_path/'models'
    save_model(TrainedModel('linear-ce', 'linear_model', [torch.zeros(784, 10), torch.zeros(10)]), models/'linear-ce.pt')
    write_png(tmp_path/'seven.png', digit_image(7))
    p = cli('predict', tmp_path/'seven.png', '--models', models, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p.stdout.close() # the reader is gone before the first line is written
    err = p.stderr.read()
    assert (p.wait(timeout=100), err) == (141, b'')

def interrupt_while_importing(cmd):
    "Start `cmd`, send it Ctrl-C as soon as it is loading PyTorch (its first second); return its exit code and stderr."
    # as from a shell, Ctrl-C's default action: a child inherits an ignored SIGINT (earlier slow tests, JupyterLab's
    # or the browser's, can leave it ignored in this process), and Python then never turns it into KeyboardInterrupt
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and p.poll() is None and 'libtorch' not in Path(f'/proc/{p.pid}/maps').read_text():
        time.sleep(0.005)
    p.send_signal(signal.SIGINT)
    err = p.communicate(timeout=60)[1]
    return p.returncode, err

@pytest.mark.skipif(not Path('/proc/self/maps').exists(), reason='needs /proc to see when PyTorch is being loaded')
@pytest.mark.parametrize('how', [['-c', ENTRY], ['-m', 'mnist_scratch']], ids=['entry-point', 'python-m'])
@pytest.mark.timeout(120)
def test_ctrl_c_while_importing_exits_130_in_one_line(how):
    assert interrupt_while_importing([sys.executable, *how, 'list']) == (130, 'mnist-scratch: interrupted\n')

@pytest.mark.timeout(30)
def test_importing_the_command_does_not_import_pytorch():
    "What makes Ctrl-C work from the first instant: the module the entry point names imports nothing heavy."
    r = subprocess.run([sys.executable, '-c', "import sys, mnist_scratch.cli; print(sorted({'torch', 'fastai', 'numpy'} & set(sys.modules)))"],
                       capture_output=True, text=True, timeout=25)
    assert r.stdout == '[]\n', r.stderr

def interrupt_second_experiment(monkeypatch, at):
    "Make `reproduce` raise KeyboardInterrupt when it starts the experiment `at`."
    from mnist_scratch import report
    run = report.run_experiment
    def run_or_stop(exp, data, **options):
        if exp.id == at: raise KeyboardInterrupt
        return run(exp, data, **options)
    monkeypatch.setattr(report, 'run_experiment', run_or_stop)

@pytest.mark.parametrize('stop_at, earlier, says', [
    ('baseline-mae', False, 'no experiment finished, so no results were written'),
    ('baseline-mae', True, 'no experiment finished, so {out}/results.json is still the earlier run\'s'),
    ('baseline-mse', False, '{out}/results.json keeps the experiments that finished: baseline-mae'),
], ids=['nothing-yet', 'earlier-results', 'one-finished'])
@pytest.mark.timeout(60)
def test_ctrl_c_says_what_results_json_holds(tiny, tmp_path, monkeypatch, capsys, stop_at, earlier, says):
    out = tmp_path/'out'
    if earlier:
        out.mkdir()
        (out/'results.json').write_text('{"earlier": true}')
    interrupt_second_experiment(monkeypatch, stop_at)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        assert main(['reproduce', '--only', 'baseline-mae,baseline-mse', '--data', str(tiny), '--out', str(out)]) == 130
    # results of another schema are never merged: the run says it replaces them (it was interrupted, so it did not)
    assert any(str(w.message).endswith("this run's results replace it") for w in caught) == bool(earlier)
    assert capsys.readouterr().err.splitlines()[-1] == 'mnist-scratch: interrupted; ' + says.format(out=out)
    if earlier: assert (out/'results.json').read_text() == '{"earlier": true}'
    else: assert (out/'results.json').exists() == (stop_at == 'baseline-mse')

@pytest.mark.timeout(60)
def test_out_in_the_home_folder_is_expanded(tiny, tmp_path, monkeypatch):
    monkeypatch.setenv('HOME', str(tmp_path/'home'))
    monkeypatch.chdir(tmp_path)
    assert main(['reproduce', '--only', 'baseline-mae', '--data', str(tiny), '--out', '~/res']) == 0
    assert strict_json((tmp_path/'home'/'res'/'results.json').read_text())['experiments']['baseline-mae']['accuracy'] == 1.0
    assert not (tmp_path/'~').exists() # no folder literally named `~`

NO_USER = 'nosuchuser-mnist-scratch'

@pytest.mark.parametrize('args', [['reproduce', '--only', 'baseline-mae', '--out', f'~{NO_USER}/x'],
                                  ['predict', 'x.png', '--models', f'~{NO_USER}/x']], ids=['out', 'models'])
@pytest.mark.timeout(30)
def test_tilde_of_an_unknown_user_is_a_usage_error(tiny, tmp_path, monkeypatch, capsys, args):
    with pytest.raises(KeyError): pwd.getpwnam(NO_USER)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as e: main(args[:1] + (['--data', str(tiny)] if args[0] == 'reproduce' else []) + args[1:])
    assert e.value.code == 2
    option = args[-2]
    assert capsys.readouterr().err.splitlines()[-1] == (f"mnist-scratch: error: {option} ~{NO_USER}/x: no user '{NO_USER}' on this "
        f"machine to expand ~{NO_USER}; give the full path, or ./~{NO_USER}/x for a folder named so")
    assert not any(p.name.startswith('~') for p in tmp_path.iterdir()) # nothing made before the check

def help_of(*cmd, capsys):
    with pytest.raises(SystemExit) as e: main([*cmd, '--help'])
    assert e.value.code == 0
    return capsys.readouterr().out

@pytest.mark.timeout(30)
def test_each_help_gives_the_environment_and_exit_codes_that_apply(capsys):
    "Each command's help names the variables and exit codes that apply to it, and what takes long."
    top, predict, listing, cache, reproduce, bench, speedrun = (help_of(*c, capsys=capsys) for c in ((), ('predict',), ('list',), ('cache',), ('reproduce',), ('bench',), ('speedrun',)))
    for text in (predict, listing):
        assert 'environment variables' not in text and 'MNIST_SCRATCH' not in text and 'results.json' not in text
        assert '130  interrupted (Ctrl-C)\n' in text and '141 ' in text
    assert '1    the models cannot be loaded, or an image cannot be read' in predict and '\n  1 ' not in listing
    assert 'MNIST_SCRATCH_CACHE' in cache and 'MNIST_SCRATCH_DATA' not in cache and 'FASTAI_HOME' not in cache
    assert all(v in reproduce for v in ('MNIST_SCRATCH_DATA', 'MNIST_SCRATCH_CACHE', 'FASTAI_HOME'))
    assert '130  interrupted (Ctrl-C); results.json keeps the experiments that finished' in reproduce
    assert 'or an experiment diverged' in reproduce
    assert 'resnet18 included' in ' '.join(reproduce.split()) and 'trains resnet18' in ' '.join(bench.split())
    assert '99% in seconds' in top and 'the --save file cannot be used' in ' '.join(speedrun.split())
    for text in (top, reproduce, bench, speedrun):
        assert all(s in text for s in ('MNIST_SCRATCH_DATA', 'MNIST_SCRATCH_CACHE', 'exit codes', '130'))

# --- 13. names from files and models reach the terminal escaped ---

@pytest.mark.timeout(60)
def test_model_ids_and_file_names_with_escape_codes_are_printed_safely(tmp_path, capsys):
    models, bad = tmp_path/'models', '\x1b[2J\x07'
    save_model(TrainedModel(bad, 'linear_model', [torch.zeros(784, 10), torch.zeros(10)]), models/f'{bad}.pt')
    write_png(tmp_path/f'{bad}.png', digit_image(7))
    assert main(['predict', str(tmp_path/f'{bad}.png'), '--models', str(models)]) == 0
    out = capsys.readouterr().out
    assert '\\x1b[2J\\x07' in out.splitlines()[0] and out.splitlines()[1].startswith('  \\x1b[2J\\x07 ')
    assert main(['predict', str(tmp_path/f'{bad}.png'), '--models', str(models), '--json']) == 0
    found = strict_json(capsys.readouterr().out)
    assert list(found[0]['predictions']) == [bad]
    (models/f'{bad}2.pt').write_bytes(b'not a model') # a message that names the file
    assert main(['predict', str(tmp_path/f'{bad}.png'), '--models', str(models)]) == 1
    std = capsys.readouterr()
    assert '\x1b' not in std.out + std.err and '\x07' not in std.out + std.err and '\\x1b[2J\\x072.pt' in std.err

# --- FIFOs and links where the results go: nothing is read, nothing blocks ---

@pytest.mark.timeout(30)
def test_out_that_is_a_fifo_or_a_file_is_a_usage_error(tiny, tmp_path, capsys):
    for name, make in (('fifo', os.mkfifo), ('file', lambda p: Path(p).write_text('mine'))):
        make(tmp_path/name)
        with pytest.raises(SystemExit) as e: main(['reproduce', '--only', 'baseline-mae', '--data', str(tiny), '--out', str(tmp_path/name)])
        assert e.value.code == 2
        assert capsys.readouterr().err.splitlines()[-1] == \
            f'mnist-scratch: error: --out {tmp_path/name}: not a folder; give a folder for the results (it is made if missing)'
    assert (tmp_path/'file').read_text() == 'mine'

@pytest.mark.timeout(60)
def test_results_that_are_fifos_or_links_are_replaced_not_read(tiny, tmp_path):
    out, elsewhere = tmp_path/'out', tmp_path/'elsewhere.json'
    (out/'models').mkdir(parents=True)
    os.mkfifo(out/'results.json')
    os.mkfifo(out/'models'/'linear-ce.pt')
    elsewhere.write_text('not yours')
    (out/'results.md').symlink_to(elsewhere)
    with pytest.warns(UserWarning, match=r"results.json: not a regular file, so not read; this run's results replace it"):
        assert main(['reproduce', '--only', 'baseline-mae,linear-ce', '--epochs', '1', '--data', str(tiny), '--out', str(out)]) == 0
    assert strict_json((out/'results.json').read_text())['experiments']['linear-ce']['diverged'] is None
    assert (out/'models'/'linear-ce.pt').is_file() and not (out/'results.md').is_symlink()
    assert elsewhere.read_text() == 'not yours' # the link was replaced, not written through

@pytest.mark.timeout(30)
def test_an_old_fifo_named_like_a_temporary_in_out_does_not_block(tiny, tmp_path):
    out = tmp_path/'out'
    out.mkdir()
    os.mkfifo(out/'.writing-x')
    os.utime(out/'.writing-x', (time.time() - 7200,)*2) # two hours old: looked at as a leftover of a killed run
    assert main(['reproduce', '--only', 'baseline-mae', '--data', str(tiny), '--out', str(out)]) == 0
    assert strict_json((out/'results.json').read_text())['experiments']['baseline-mae']['accuracy'] == 1.0
