"A run of some experiments keeps the others in results.json and results.md, each marked with the run it came from; or says it replaced them."
import json, pytest
from conftest import make_tiny_mnist
from mnist_scratch.cli import main
import mnist_scratch

def results(out): return json.loads((out/'results.json').read_text())

def reproduce(tiny, out, only, *more):
    assert main(['reproduce', '--only', only, '--data', str(tiny), '--out', str(out), *more]) == 0

@pytest.mark.timeout(60)
def test_a_subset_run_keeps_the_other_experiments(tiny, tmp_path, capsys):
    "`--only linear-ce` after a run of three: linear-ce is the new one, the two baselines are kept with their own run's record."
    out = tmp_path/'out'
    reproduce(tiny, out, 'baseline-mae,baseline-mse,linear-ce', '--epochs', '1')
    first = results(out)
    reproduce(tiny, out, 'linear-ce', '--epochs', '2', '--seed', '7')
    res = results(out)
    e = res['experiments']
    assert list(e) == ['baseline-mae', 'baseline-mse', 'linear-ce'] # the series' order, whatever ran last
    assert res['schema'] == 5 and res['started'] != first['started']
    for k in ('baseline-mae', 'baseline-mse'): # kept whole, and marked with the run they came from
        assert e[k] == first['experiments'][k] and e[k]['ran']['run'] == first['started']
    assert e['linear-ce']['hyperparameters'] == dict(epochs=2, lr=1.0, bs=256, seed=7) and len(e['linear-ce']['history']) == 2
    ran = e['linear-ce']['ran']
    assert ran['run'] == res['started'] and ran['finished'] >= res['started']
    assert ran['version'] == mnist_scratch.__version__ and ran['machine']['torch'] == res['machine']['torch']
    md = (out/'results.md').read_text()
    assert '| `baseline-mae` |' in md and '| `linear-ce` |' in md
    assert 'Kept from earlier runs (not run this time): baseline-mae, baseline-mse; each row says when it ran.' in md
    assert md.splitlines()[2].startswith('| model | id |') and md.splitlines()[2].endswith('| blog post | ran (UTC) |')
    when = ran['finished'][:16].replace('T', ' ')
    assert [l for l in md.splitlines() if '`linear-ce`' in l][0].endswith(f'| {when} |')
    assert 'Kept from earlier runs' in capsys.readouterr().out # the terminal's table says it too

@pytest.mark.timeout(60)
def test_results_on_other_data_are_replaced_with_a_warning(tiny, tmp_path, capsys):
    "Numbers on other data do not belong in one table: they are replaced, and a warning says so."
    out, other = tmp_path/'out', make_tiny_mnist(tmp_path/'other', n_train=4)
    reproduce(tiny, out, 'baseline-mae')
    with pytest.warns(UserWarning) as w: reproduce(other, out, 'baseline-mse')
    assert list(results(out)['experiments']) == ['baseline-mse']
    assert [str(x.message) for x in w if x.category is UserWarning] == [f"{out/'results.json'}: its results are on other data ({tiny}, 30 training images); "
                                           "this run's results replace it"]

def schema4(tiny):
    "results.json as mnist-scratch 0.1.0 wrote it (schema 4: one header for the whole run, no `ran` per experiment)."
    return dict(schema=4, version='0.1.0', commit='abc123', started='2026-11-30T10:00:00+00:00',
                machine=dict(cpu='AMD EPYC', cpus=2, gpu=None, platform='Linux', torch='2.14.1'),
                data=dict(source='path', path=str(tiny), n_train=30, n_valid=20),
                experiments={'resnet18': dict(id='resnet18', accuracy=0.9935, per_digit=[0.99]*10, confusion=[], device='cpu',
                                              hyperparameters=dict(epochs=4, lr=0.1, bs=512, seed=42, device=None),
                                              parameters=11_708_106, seconds=301.0, history=[], loss=[], diverged=None)})

@pytest.mark.timeout(60)
def test_a_schema_4_file_is_read_and_its_experiments_keep_its_header(tiny, tmp_path):
    out = tmp_path/'out'
    out.mkdir()
    old = schema4(tiny)
    (out/'results.json').write_text(json.dumps(old))
    reproduce(tiny, out, 'baseline-mse')
    e = results(out)['experiments']
    assert list(e) == ['baseline-mse', 'resnet18']
    assert e['resnet18']['accuracy'] == 0.9935 and e['resnet18']['ran'] == dict(
        run=old['started'], finished=old['started'], version='0.1.0', commit='abc123', machine=old['machine'])
    assert '| resnet18 (fastai) | `resnet18` | 99.35% |' in (out/'results.md').read_text()
    assert '| 2026-11-30 10:00 |' in (out/'results.md').read_text()

@pytest.mark.parametrize('text, why', [
    ('{"earlier": tr', 'not a results file that can be read (JSONDecodeError)'),
    ('{"schema": "\xe9"}', 'not a results file that can be read (UnicodeDecodeError)'),
    ('[1, 2]', 'results of schema None, and this mnist-scratch keeps those of schema 4 or 5'),
    (None, 'results of schema 3, and this mnist-scratch keeps those of schema 4 or 5'),
], ids=['truncated', 'not-utf8', 'not-a-dict', 'schema-3'])
@pytest.mark.timeout(60)
def test_a_file_that_cannot_be_kept_is_replaced_with_a_warning(tiny, tmp_path, capsys, text, why):
    out = tmp_path/'out'
    out.mkdir()
    if text is None: (out/'results.json').write_text(json.dumps(dict(schema4(tiny), schema=3)))
    else: (out/'results.json').write_bytes(text.encode('latin-1'))
    with pytest.warns(UserWarning) as w: reproduce(tiny, out, 'baseline-mae')
    assert list(results(out)['experiments']) == ['baseline-mae']
    assert [str(x.message) for x in w if x.category is UserWarning] == [f"{out/'results.json'}: {why}; this run's results replace it"]

@pytest.mark.timeout(60)
def test_an_interrupted_subset_run_still_holds_the_earlier_experiments(tiny, tmp_path, monkeypatch, capsys):
    "Ctrl-C during the second experiment of a subset run: the first is updated, the earlier ones are all still there."
    from mnist_scratch import report
    out = tmp_path/'out'
    reproduce(tiny, out, 'baseline-mae,baseline-mse,linear-ce', '--epochs', '1')
    before = results(out)['experiments']
    run = report.run_experiment
    def stop_at_linear(exp, data, **options):
        if exp.id == 'linear-ce': raise KeyboardInterrupt
        return run(exp, data, **options)
    monkeypatch.setattr(report, 'run_experiment', stop_at_linear)
    assert main(['reproduce', '--only', 'baseline-mse,linear-ce', '--data', str(tiny), '--out', str(out)]) == 130
    after = results(out)['experiments']
    assert list(after) == ['baseline-mae', 'baseline-mse', 'linear-ce']
    assert after['baseline-mae'] == before['baseline-mae'] and after['linear-ce'] == before['linear-ce']
    assert after['baseline-mse']['ran']['run'] != before['baseline-mse']['ran']['run'] # the one that ran again

def site_builder():
    import importlib.util
    from conftest import ROOT
    spec = importlib.util.spec_from_file_location('site_build', ROOT/'docs'/'build.py')
    m = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(m)
    return m

def test_the_sites_pictures_say_what_they_show():
    "Each notebook picture reaches the site with an alt text: its cell's first comment, else the prose above it; never nbconvert's placeholder."
    b = site_builder()
    pic = lambda: dict(output_type='display_data', data={'image/png': 'iVBORw0K', 'text/plain': '<Figure>'}, metadata={})
    cell = dict(cell_type='code', source=['#| hide\n', '# the error rate of every model\n', 'plot_results(res)'], outputs=[pic(), pic()])
    html = [o['data']['text/html'] for o in b.with_alt(cell, '## Charts\n\nThe first paragraph.')['outputs']]
    assert html == ['<img src="data:image/png;base64,iVBORw0K" alt="The error rate of every model (picture 1 of 2)" style="max-width: 100%">',
                    '<img src="data:image/png;base64,iVBORw0K" alt="The error rate of every model (picture 2 of 2)" style="max-width: 100%">']
    bare = dict(cell_type='code', source=['plot_results(res);'], outputs=[pic()])
    assert 'alt="Each step cuts the errors by a large factor."' in b.with_alt(bare, '## Charts\n\nIntro.\n\n6. Each step cuts the errors by a '
                                                                               'large factor. On a log scale.')['outputs'][0]['data']['text/html']

def test_the_sites_wide_tables_scroll():
    "The results table (ten columns) scrolls sideways on a narrow page instead of being cut off."
    from conftest import ROOT
    assert '  - extra.css' in (ROOT/'docs'/'mkdocs.yml').read_text()
    css = (ROOT/'docs'/'extra.css').read_text()
    assert '.jupyter-wrapper table' in css and 'overflow-x: auto' in css

@pytest.mark.timeout(60)
@pytest.mark.parametrize('accuracies', [(1.0, 0.9), (1.0, 1.0)], ids=['one perfect', 'all perfect'])
def test_a_model_without_test_errors_is_charted_without_warnings(accuracies):
    "A log scale has no zero: a model that gets every test digit right (tiny data) is charted, and nothing warns."
    import warnings, matplotlib.pyplot as plt
    from mnist_scratch.report import plot_results
    res = dict(experiments={k: dict(accuracy=a, history=[a/2, a]) for k, a in zip(('linear-ce', 'mlp'), accuracies)})
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        figs = plot_results(res)
    left, right = figs[0].axes[0].get_xlim()
    assert 0 < left < right and len(figs) == 2
    for f in figs: plt.close(f)
