__all__ = ['SCHEMA', 'SOURCES', 'json_text', 'git_commit', 'new_results', 'ran_with', 'results_markdown', 'results_table', 'plot_results', 'write_report', 'reproduce']

# %% ../nbs/90_experiments.ipynb #04dfd0d4
import dataclasses, datetime, io, json, math, subprocess, sys
from pathlib import Path
import torch
import mnist_scratch
from .sources import find_mnist, load_mnist, printable, shown, write_atomic
from .fast import machine
from .metrics import plot_curves
from .handwriting import save_model
from .experiments import EXPERIMENTS, options_for, run_experiment

# %% ../nbs/90_experiments.ipynb #6ef8616c
SCHEMA = 3 # of results.json; 2: one record per experiment with its hyperparameters and device; 3: `diverged`, and
           # null for a number that is not finite
SOURCES = {'path': 'the path given', 'env': '$MNIST_SCRATCH_DATA', 'fastai': "fastai's copy", 'sample': 'the offline sample'}

def _finite(o):
    "`o` with every float that is not finite (NaN, an infinity) replaced by `None`, in dicts and lists at any depth."
    if isinstance(o, float): return o if math.isfinite(o) else None
    if isinstance(o, dict): return {k: _finite(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)): return [_finite(v) for v in o]
    return o

def json_text(obj, **kwargs):
    "`obj` as strict JSON, which every parser reads: a number that is not finite (NaN, infinity) is written as `null`."
    return json.dumps(_finite(obj), allow_nan=False, **kwargs) # Python's default would write a bare NaN: not JSON

def git_commit():
    "The commit of the checkout this package runs from, or `None` (an installed copy, or no git)."
    here = Path(mnist_scratch.__file__).parent
    try: r = subprocess.run(['git', 'rev-parse', 'HEAD'], cwd=here.parent, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError): return None
    return r.stdout.strip() if r.returncode == 0 and (here.parent/'.git').exists() else None

def new_results(src, data):
    "The header of `results.json`: what made it, when, where, on which data; no experiments yet."
    return dict(schema=SCHEMA, version=mnist_scratch.__version__, commit=git_commit(),
                started=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'),
                torch=torch.__version__, machine=machine(),
                data=dict(source=src.source, path=str(src.path), n_train=data.n_train, n_valid=data.n_valid),
                experiments={})

# %% ../nbs/90_experiments.ipynb #a078d750
def ran_with(r):
    "The options a result ran with, as `epochs 40, lr 1.0, ...`, or '—' for none."
    return ', '.join(f'{n} {v}' for n, v in r['hyperparameters'].items() if v is not None) or '—'

def results_markdown(res):
    "The comparison table of `reproduce`'s results in Markdown, with the blog post's numbers."
    d, m = res['data'], res['machine']
    lines = [f"Data: {SOURCES.get(d['source'], d['source'])}, {d['n_train']:,} training and {d['n_valid']:,} test images. "
             f"Machine: {m['cpu']}, {m['cpus']} CPUs{', ' + m['gpu'] if m['gpu'] else ''}; PyTorch {res['torch']}.", '',
             '| model | id | accuracy | mean per digit | parameters | ran with | device | seconds | blog post |',
             '|---|---|---|---|---|---|---|---|---|']
    for k, r in res['experiments'].items():
        e = EXPERIMENTS.get(k)
        post = f"{e.post:.1%}" if e and e.post else '—'
        diverged = f" (diverged at epoch {r['diverged']})" if r.get('diverged') else ''
        lines.append(f"| {e.title if e else k} | `{k}` | {r['accuracy']:.2%}{diverged} | {sum(r['per_digit'])/10:.2%} | "
                     f"{r['parameters']:,} | {ran_with(r)} | {r['device']} | {r['seconds']:.1f} | {post} |")
    return '\n'.join(lines) + '\n'

def results_table(res):
    "The results of `reproduce` as a text table: accuracy, time, each digit's accuracy, and the options used."
    d = res['data']
    lines = [f"data: {SOURCES.get(d['source'], d['source'])} ({printable(shown(d['path']))}), {d['n_train']} training and {d['n_valid']} test images",
             f"{'experiment':<16}{'accuracy':>9}{'mean/digit':>11}{'seconds':>9}  " + ''.join(f'{i:>6}' for i in range(10)) + '  ran with']
    for name, r in res['experiments'].items():
        pd = r['per_digit']
        lines.append(f"{name:<16}{r['accuracy']:>9.2%}{sum(pd)/len(pd):>11.2%}{r['seconds']:>9.1f}  "
                     + ''.join(f'{a*100:>6.1f}' for a in pd) + f"  {ran_with(r)}{'' if r['device'] == 'cpu' else ' on ' + r['device']}"
                     + (f"  DIVERGED at epoch {r['diverged']}: do not trust these numbers" if r.get('diverged') else ''))
    return '\n'.join(lines)

# %% ../nbs/90_experiments.ipynb #25bf81df
def plot_results(res):
    "Two charts: every model's test error on a log scale (with the post's), and accuracy per epoch with the baseline."
    import matplotlib.pyplot as plt
    exps = res['experiments']
    names = list(exps)
    err = [1 - exps[k]['accuracy'] for k in names]
    fig1, ax = plt.subplots(figsize=(8, 4))
    ax.barh(names, err, color='tab:blue', label='ours')
    post = [(k, 1 - EXPERIMENTS[k].post) for k in names if k in EXPERIMENTS and EXPERIMENTS[k].post]
    ax.scatter([e for _, e in post], [k for k, _ in post], color='tab:red', zorder=3, label='blog post')
    for i, e in enumerate(err): ax.text(e*1.05, i, f"{e:.2%} wrong", va='center', fontsize=8)
    ax.set(xscale='log', xlim=(min(err + [e for _, e in post])/2, 1.5), xlabel='test error (log scale): lower is better',
           title='Every model of the series: the share of test digits it gets wrong')
    ax.invert_yaxis(); ax.legend(loc='upper left', bbox_to_anchor=(1.01, 1))
    fig2, ax = plt.subplots(figsize=(8, 4))
    plot_curves({k: r['history'] for k, r in exps.items() if r.get('history')}, title='Accuracy after each epoch',
                baseline=exps.get('baseline-mse', {}).get('accuracy'), ax=ax)
    return fig1, fig2

def write_report(res, out, charts=True):
    "Write `results.json` and `results.md` into `out`, and with `charts` two PNG charts; return the names written."
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    # each file is replaced whole or not at all: a full disk leaves the previous results as they were
    write_atomic(out/'results.json', json_text(res, indent=2).encode())
    write_atomic(out/'results.md', results_markdown(res).encode())
    if not charts: return ['results.json', 'results.md']
    import matplotlib.pyplot as plt # only now: importing it costs about a second
    for fig, name in zip(plot_results(res), ('accuracy.png', 'history.png')):
        buf = io.BytesIO()
        fig.savefig(buf, format='png', dpi=100, bbox_inches='tight')
        plt.close(fig)
        write_atomic(out/name, buf.getvalue())
    return ['results.json', 'results.md', 'accuracy.png', 'history.png']

# %% ../nbs/90_experiments.ipynb #992160d6
def reproduce(only=None, # experiment ids to run; `None`: all of them
              data=None, # a folder, an archive, or `None` to let `find_mnist` decide
              sample=False, # use the small offline sample
              full=False, # refuse the sample fallback
              out='results', # folder for results.json, and `models/` for the trained models
              show_progress=True, # show progress while decoding
              refresh=False, # decode the data again (and extract an archive again), whatever the cache holds
              on_result=None, # called with each experiment's id and result as soon as it is written
              **options, # hyperparameters, each applied to the experiments that take it
             ):
    "Run experiments on MNIST, rewriting `out/results.json` and saving each trained model; return the results and files."
    exps = [EXPERIMENTS[k] for k in (only or EXPERIMENTS)]
    options = options_for(exps, **options) # checked before any work
    src = find_mnist(data, sample=sample, full=full, refresh=refresh)
    mnist = load_mnist(src, show_progress=show_progress, refresh=refresh)
    res, written, models = new_results(src, mnist), [], []
    for e in exps:
        r = run_experiment(e, mnist, **options[e.id])
        if r.model and not r.diverged: # its own file: the numbers in results.json, the parameters in models/
            r.model.info['data'] = res['data']
            save_model(r.model, Path(out)/'models'/f'{e.id}.pt')
            models.append(f'models/{e.id}.pt')
        res['experiments'][e.id] = {k: v for k, v in dataclasses.asdict(dataclasses.replace(r, model=None)).items() if k != 'model'}
        written = write_report(res, out, charts=only is None and e is exps[-1]) + models
        if on_result: on_result(e.id, res['experiments'][e.id])
    return res, written