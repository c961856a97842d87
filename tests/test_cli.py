import json, os, shutil, subprocess, sys, pytest
from PIL import Image
from pathlib import Path
from conftest import ENTRY, cli_code, run_cli, write_png, make_tiny_mnist
import numpy as np
from mnist_scratch.cli import main
from mnist_scratch.experiments import EXPERIMENTS
from mnist_scratch.sources import load_mnist


@pytest.mark.slow
def test_entry_point_and_python_m_are_the_same_command():
    from importlib.metadata import entry_points
    (ep,) = entry_points(group='console_scripts', name='mnist-scratch')
    assert ep.value == 'mnist_scratch.cli:main'
    import mnist_scratch
    for cmd in ([sys.executable, '-c', ENTRY], [sys.executable, '-m', 'mnist_scratch']):
        r = subprocess.run(cmd + ['--version'], capture_output=True, text=True, timeout=120)
        assert (r.returncode, r.stdout) == (0, f'mnist-scratch {mnist_scratch.__version__}\n'), r.stderr

def test_list_shows_every_experiment_with_defaults(capsys):
    assert main(['list']) == 0
    out = capsys.readouterr().out.splitlines()
    rows = {l.split()[0]: l for l in out[1:]}
    assert list(rows) == list(EXPERIMENTS)
    assert rows['linear-ce'].endswith('91.5%  epochs 40, lr 1.0, bs 256, seed 42')
    assert rows['resnet18'].endswith('99.4%  epochs 4, lr 0.1, bs 512, seed 42') and rows['baseline-mae'].endswith('—  —')

def test_results_survive_an_interrupted_run(tiny, tmp_path, monkeypatch):
    "Ctrl-C during the third experiment: exit 130, and results.json holds the two that finished, with what made them."
    import dataclasses
    from mnist_scratch import experiments, report
    def interrupted(data, **hp): raise KeyboardInterrupt
    exps = dict(EXPERIMENTS, **{'linear-ce': dataclasses.replace(EXPERIMENTS['linear-ce'], run=interrupted)})
    for module in (experiments, report): monkeypatch.setattr(module, 'EXPERIMENTS', exps) # the command imports it when it runs
    out = tmp_path/'out'
    assert main(['reproduce', '--only', 'baseline-mae,baseline-mse,linear-ce', '--data', str(tiny), '--out', str(out)]) == 130
    res = json.loads((out/'results.json').read_text())
    assert list(res['experiments']) == ['baseline-mae', 'baseline-mse']
    assert res['schema'] == 5 and res['version'] and res['machine']['torch'] and res['started'] and 'commit' in res
    assert res['experiments']['baseline-mse']['device'] == 'cpu'
    assert sorted(p.name for p in out.iterdir()) == ['results.json', 'results.md']

def test_reproduce_on_tiny_data(tiny, tmp_path, capsys):
    assert cli_code('reproduce', '--only', 'baseline-mae,baseline-mse', '--data', tiny, '--out', tmp_path/'out') == 0
    res = json.loads((tmp_path/'out'/'results.json').read_text())
    assert res['data'] == dict(source='path', path=str(tiny), n_train=30, n_valid=20)
    assert list(res['experiments']) == ['baseline-mae', 'baseline-mse']
    assert {p.name for p in (tmp_path/'out').iterdir()} == {'results.json', 'results.md'} # charts: for the whole series
    assert '| pixel-mean baseline, MSE | `baseline-mse` | 100.00% |' in (tmp_path/'out'/'results.md').read_text()
    for e in res['experiments'].values():
        assert e['accuracy'] == 1.0 and e['per_digit'] == [1.0]*10 and e['seconds'] >= 0
    out = capsys.readouterr().out
    assert 'baseline-mse' in out and '100.00%' in out

@pytest.mark.writes_tiny
def test_only_and_accuracy_is_exact(tiny, tmp_path):
    # make one test 3 look like a 5: 19 of 20 right, the 3s at 50%
    write_png(tiny/'testing'/'3'/'300.png', np.asarray(Image.open(tiny/'training'/'5'/'500.png')))
    assert main(['reproduce', '--only', 'baseline-mse', '--data', str(tiny), '--out', str(tmp_path)]) == 0
    e = json.loads((tmp_path/'results.json').read_text())['experiments']
    assert list(e) == ['baseline-mse']
    assert e['baseline-mse']['accuracy'] == 19/20 and e['baseline-mse']['per_digit'][3] == 0.5

USAGE_ERRORS = {
    'data-and-sample': (['--data', 'x', '--sample'], '--data and --sample exclude each other'),
    'sample-and-full': (['--sample', '--full'], 'not allowed with'),
    'epochs-unused': (['--only', 'baseline-mse', '--epochs', '3'], '--epochs: none of the chosen experiments takes it (baseline-mse)'),
    'unknown-experiment': (['--only', 'baseline-typo'], 'unknown experiment baseline-typo'),
    'no-experiment': (['--only', ','], 'unknown experiment'),
    'out-unwritable': (['--out', '/proc/no-such-folder'], 'cannot write there'),
    'epochs-0': (['--epochs', '0'], 'argument --epochs: must be a finite number greater than 0'),
    'epochs-float': (['--epochs', '1e3'], 'is not a number'),
    'lr-negative': (['--lr', '-1'], 'argument --lr: must be a finite number greater than 0'),
    'lr-inf': (['--lr', 'inf'], 'must be a finite number greater than 0'),
    'lr-nan': (['--lr', 'nan'], 'must be a finite number'),
    # above 1e37 fastai's optimizer stops with an overflow error (resnet18's first steps take up to 10x the rate)
    'lr-overflows': (['--lr', '1e38'], 'argument --lr: must be at most 1e+37, got 1e38'),
    'bs-0': (['--bs', '0'], 'argument --bs: must be a finite number greater than 0'),
    'bs-word': (['--bs', 'many'], "argument --bs: 'many' is not a number"),
    'seed-too-large': (['--seed', '18446744073709551616'], 'must be from 0 to 4294967295'),
    'seed-negative': (['--seed', '-1'], 'must be from 0'),
    'seed-float': (['--seed', '1.5'], 'is not a whole number'),
    'device': (['--device', 'tpu'], 'argument --device: invalid choice'),
}

@pytest.mark.parametrize('args, msg', USAGE_ERRORS.values(), ids=USAGE_ERRORS)
def test_usage_errors_exit_2_in_one_line(tiny, tmp_path, capsys, args, msg):
    "Arguments that cannot work: exit 2 and one line naming the option, before anything is read or written."
    out = tmp_path/'out'
    assert cli_code('reproduce', *([] if '--data' in args else ['--data', tiny]), *args, *([] if '--out' in args else ['--out', out])) == 2
    err = capsys.readouterr().err
    assert msg in err.splitlines()[-1] and 'Traceback' not in err, err
    assert not out.exists() # checked before anything is written

def corrupt(tiny):
    fn = tiny/'training'/'2'/'201.png'
    fn.write_bytes(fn.read_bytes()[:50])

def not_an_archive(tiny):
    fn = tiny.parent/'mnist_png.tgz'
    fn.write_text('<html>404 Not Found</html>') # what a failed download leaves
    return fn

@pytest.mark.parametrize('damage, msg', [
    (lambda t: shutil.rmtree(t/'training'), 'training/0: folder missing'),
    (lambda t: shutil.rmtree(t/'testing'/'6'), 'testing/6: folder missing'),
    (lambda t: [f.unlink() for f in (t/'training'/'8').iterdir()], 'training/8: no PNG images'),
    (corrupt, 'training/2/201.png: not a readable PNG'),
    (lambda t: write_png(t/'testing'/'1'/'100.png', np.zeros((28, 29), np.uint8)), 'testing/1/100.png: image is 29x28'),
    (lambda t: write_png(t/'testing'/'1'/'100.png', np.zeros((28, 28, 4), np.uint8), 'RGBA'), 'testing/1/100.png: image has transparency'),
    (not_an_archive, 'mnist_png.tgz: not a complete .tgz archive'),
])
@pytest.mark.timeout(60)
@pytest.mark.writes_tiny
def test_bad_data_one_clear_line(tiny, tmp_path, capsys, damage, msg):
    data = damage(tiny)
    assert cli_code('reproduce', '--data', data if isinstance(data, Path) else tiny, '--out', tmp_path/'out') == 1
    err = capsys.readouterr().err
    errors = [l for l in err.splitlines() if 'error' in l]
    assert len(errors) == 1 and msg in errors[0] and 'Traceback' not in err, err
    assert not (tmp_path/'out'/'results.json').exists()

@pytest.mark.slow
def test_sample_run_warns(tmp_path):
    r = run_cli('reproduce', '--sample', '--only', 'baseline-mse', '--out', tmp_path)
    assert r.returncode == 0, r.stderr
    assert 'NOT comparable' in r.stderr
    res = json.loads((tmp_path/'results.json').read_text())
    assert res['data']['source'] == 'sample' and (res['data']['n_train'], res['data']['n_valid']) == (4000, 1000)
    assert res['experiments']['baseline-mse']['accuracy'] > 0.7 # real digits: far above chance

def test_experiment_registry_names():
    assert list(EXPERIMENTS) == ['baseline-mae', 'baseline-mse', 'linear-sigmoid', 'linear-softmax', 'linear-ce', 'mlp', 'resnet18']

def test_trained_experiments_on_tiny_data(tiny, tmp_path):
    args = ['reproduce', '--only', 'linear-sigmoid,linear-softmax,linear-ce,mlp', '--data', str(tiny),
            '--epochs', '3', '--lr', '0.5', '--bs', '8', '--seed', '3']
    assert main(args + ['--out', str(tmp_path/'a')]) == 0
    e = json.loads((tmp_path/'a'/'results.json').read_text())['experiments']
    assert list(e) == ['linear-sigmoid', 'linear-softmax', 'linear-ce', 'mlp']
    for r in e.values():
        assert r['hyperparameters'] == dict(epochs=3, lr=0.5, bs=8, seed=3) and r['device'] == 'cpu'
        assert len(r['history']) == 3 and len(r['per_digit']) == 10 and r['seconds'] > 0
        assert r['accuracy'] == pytest.approx(r['history'][-1]) # the final exact accuracy is the last epoch's
    assert e['linear-ce']['accuracy'] == 1.0 # the tiny digits are separable
    # the same seed gives the same numbers on a re-run
    assert main(args + ['--out', str(tmp_path/'b')]) == 0
    again = json.loads((tmp_path/'b'/'results.json').read_text())['experiments']
    assert all(again[k]['history'] == e[k]['history'] and again[k]['confusion'] == e[k]['confusion'] for k in e)

@pytest.mark.slow
@pytest.mark.imports('fastai.vision.all')
def test_whole_series_writes_report_and_charts(tiny, tmp_path):
    tmp_path = tmp_path/'out'
    assert main(['reproduce', '--data', str(tiny), '--epochs', '1', '--bs', '16', '--out', str(tmp_path)]) == 0
    assert {p.name for p in tmp_path.iterdir()} == {'results.json', 'results.md', 'accuracy.png', 'history.png', 'models'}
    res = json.loads((tmp_path/'results.json').read_text())
    # every trained model is saved, and loaded back it gets the accuracy reproduce measured, on the same test images
    from mnist_scratch.models import load_models
    from mnist_scratch.data import stack_xy
    x, y = stack_xy(load_mnist(tiny, show_progress=False).test)
    models = load_models(tmp_path/'models')
    assert sorted(m.id for m in models) == ['linear-ce', 'linear-sigmoid', 'linear-softmax', 'mlp', 'resnet18']
    for m in models:
        assert (m.scores(x).argmax(1) == y).float().mean().item() == pytest.approx(res['experiments'][m.id]['accuracy']), m.id
        assert m.info['hyperparameters'] == res['experiments'][m.id]['hyperparameters'] and m.info['data'] == res['data']
    assert list(res['experiments']) == list(EXPERIMENTS)
    md = (tmp_path/'results.md').read_text()
    assert all(f'`{k}`' in md for k in EXPERIMENTS) and '| 99.4% |' in md # the post's resnet18 number beside ours
    assert (tmp_path/'accuracy.png').read_bytes()[:4] == b'\x89PNG'

@pytest.mark.slow
def test_bench_smoke(tmp_path):
    "The benchmark runs end to end on a tiny slice (its timings mean nothing here), in a fresh process, with no warnings."
    data = make_tiny_mnist(tmp_path/'data', n_train=30, n_test=3)
    r = run_cli('bench', '--quick', '--repeat', '1', '--data', data, '--json')
    assert r.returncode == 0 and r.stderr == '' # fastai's import warns (torch.jit.script) unless the command filters it
    res = json.loads(r.stdout)
    assert res['epoch']['post'] > 0 and res['epoch']['ours'] > 0 and res['resnet']['ours'] > 0
    assert res['machine']['cpus'] == os.cpu_count() and res['process_epochs'] == 10
