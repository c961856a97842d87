"The library's shape: modules along the data flow, each imported only by the ones after it, each from one notebook."
import ast, json
from conftest import ROOT

LIB = ROOT/'mnist_scratch'
# data -> metrics -> training -> models and losses -> experiments -> report (and bench beside it) -> command line.
# The appendix modules of the data's way in (files, images, cache, archive, sources), of the machine record and of the
# fast training paths sit low: the story uses them. Model files (models) sit below the experiments that save them.
ORDER = ['files', 'images', 'pictures', 'cache', 'archive', 'sources', 'machine', 'data', 'fast', 'baseline', 'training',
         'losses', 'mlp', 'blocks', 'speedrun', 'resnet', 'resnet_runs', 'models', 'handwriting', 'canvas', 'exercises', 'experiments', 'report', 'bench', 'cli',
         '__main__']
BESIDE = {('report', 'bench'), ('bench', 'report')} # neither may import the other

def project_imports(mod):
    "The modules of this package that `mod` imports, wherever in the file (inside functions too)."
    found = set()
    for node in ast.walk(ast.parse((LIB/f'{mod}.py').read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1 or (node.module or '').startswith('mnist_scratch'):
                name = (node.module or '').removeprefix('mnist_scratch').lstrip('.')
                found.update([name] if name else [a.name for a in node.names])
        elif isinstance(node, ast.Import):
            found.update(a.name.split('.')[1] for a in node.names if a.name.startswith('mnist_scratch.'))
    return found

def test_every_module_has_a_place_in_the_order():
    assert sorted(p.stem for p in LIB.glob('*.py') if p.stem not in ('__init__', '_modidx')) == sorted(ORDER)

def test_imports_follow_the_data_flow():
    "No module imports itself, one after it in ORDER, or its neighbour: so there can be no cycle either."
    wrong = [(m, i) for m in ORDER for i in project_imports(m)
             if i not in ('', '__init__', '_modidx') and (ORDER.index(i) >= ORDER.index(m) or (m, i) in BESIDE)]
    assert not wrong, f'imports against the order {ORDER}: {wrong}'

def test_the_check_sees_imports():
    "The check itself: it finds what cli imports (so an empty result above means something)."
    assert {'sources', 'experiments', 'report'} <= project_imports('cli') and 'cli' in project_imports('__main__')

def test_every_module_comes_from_one_notebook():
    "Each module is written by exactly one notebook: its `#| default_exp`, or `#| export name` for a second module."
    writers = {}
    for nb in sorted((ROOT/'nbs').glob('*.ipynb')):
        mods = set()
        for c in json.loads(nb.read_text())['cells']:
            for line in ''.join(c['source']).splitlines():
                parts = line.split()
                if line.startswith('#| default_exp') or (line.startswith('#| export') and len(parts) == 3): mods.add(parts[-1])
        for m in mods: writers.setdefault(m, []).append(nb.name)
    assert sorted(writers) == sorted(ORDER) and all(len(w) == 1 for w in writers.values()), writers

def test_notebook_numbers_follow_the_order():
    "Story notebooks come in the order of their modules; the appendix (9x) holds the rest."
    first = {}
    for nb in sorted((ROOT/'nbs').glob('[0-9]*.ipynb')):
        for c in json.loads(nb.read_text())['cells']:
            for line in ''.join(c['source']).splitlines():
                if line.startswith(('#| default_exp', '#| export ')) and len(line.split()) == 3: first.setdefault(line.split()[-1], nb.name)
    story = [m for m in ORDER if not first[m].startswith('9')] # the appendix notebooks' modules sit where they are used
    assert [first[m] for m in story] == sorted(first[m] for m in story)
