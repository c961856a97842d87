"The committed notebooks read as lessons: clean outputs, a questionnaire and further research, links that resolve."
import json, re, pytest
from pathlib import Path
from conftest import ROOT

NBS = sorted((ROOT/'nbs').glob('*.ipynb'))
STORY = [nb for nb in NBS if re.match(r'0\d_', nb.name)]

def outputs(nb):
    for c in json.loads(nb.read_text())['cells']:
        for o in c.get('outputs', []): yield c, o

def text(o):
    if o['output_type'] == 'stream': return ''.join(o['text'])
    if o['output_type'] == 'error': return 'Traceback ' + o.get('ename', '')
    return ''.join(''.join(v) if isinstance(v, list) else str(v) for k, v in o.get('data', {}).items() if k.startswith('text/'))

# where the machine that ran a notebook keeps things: its home, the checkout, the installed packages
MACHINE = [str(ROOT.resolve()), str(Path.home()), '/root/', '/home/', 'site-packages']

@pytest.mark.parametrize('nb', NBS, ids=lambda p: p.stem)
def test_outputs_are_clean(nb):
    "No stderr, no error, no warning or traceback, no empty HTML, and no path of the machine that ran the notebook."
    bad = []
    for c, o in outputs(nb):
        if o['output_type'] == 'stream' and o['name'] == 'stderr': bad.append(f"{c['id']}: stderr: {text(o)[:80]!r}")
        for word in ('Warning', 'Traceback', 'ERROR', *MACHINE):
            if word in text(o): bad.append(f"{c['id']}: {word}: {text(o)[:80]!r}")
        html = ''.join(o.get('data', {}).get('text/html', []))
        if 'text/html' in o.get('data', {}) and not re.sub(r'<style.*?</style>|<[^>]+>|\s', '', html, flags=re.S):
            bad.append(f"{c['id']}: an output that is only a <style> block or empty HTML")
    assert not bad, '\n'.join(bad)

@pytest.mark.parametrize('nb', STORY, ids=lambda p: p.stem)
def test_story_notebook_ends_with_questions_and_research(nb):
    cells = [''.join(c['source']) for c in json.loads(nb.read_text())['cells'] if c['cell_type'] == 'markdown']
    q = next((s for s in cells if '## Questionnaire' in s), '')
    assert len(re.findall(r'^\d+\. ', q.split('## Further research')[0], re.M)) >= 10, 'a questionnaire of at least ten questions'
    research = next((s for s in cells if '## Further research' in s), '')
    assert 2 <= len(re.findall(r'^\d+\. ', research.split('## Further research')[1], re.M)) <= 4 if research else False, \
        'two to four further-research experiments'

@pytest.mark.parametrize('nb', STORY, ids=lambda p: p.stem)
def test_story_notebook_links_its_neighbours(nb):
    md = ' '.join(''.join(c['source']) for c in json.loads(nb.read_text())['cells'] if c['cell_type'] == 'markdown')
    i = STORY.index(nb)
    for other in STORY[max(i-1, 0):i] + STORY[i+1:i+2]: assert f'({other.name})' in md, f'no link to {other.name}'

@pytest.mark.parametrize('nb', [*NBS, ROOT/'README.md'], ids=lambda p: p.stem)
def test_relative_links_resolve(nb):
    src = nb.read_text() if nb.suffix == '.md' else ' '.join(''.join(c['source']) for c in json.loads(nb.read_text())['cells'] if c['cell_type'] == 'markdown')
    links = re.findall(r'\]\((?!https?:|#|mailto:)([^)\s#]+)', src)
    base = ROOT if nb.name in ('index.ipynb', 'README.md') else nb.parent # the index is also README.md, at the top
    missing = [l for l in links if not (base/l).exists()]
    assert not missing, missing

def test_index_links_fastbook_chapter_4():
    assert 'fastbook/blob/master/04_mnist_basics.ipynb' in (ROOT/'nbs'/'index.ipynb').read_text()

def test_the_notebooks_name_their_kernel():
    "Opening a notebook starts Python 3 at once, with no 'Select Kernel' dialog: each one carries kernelspec and language_info."
    for nb in NBS:
        meta = json.loads(nb.read_text())['metadata']
        assert meta['kernelspec']['name'] == 'python3' and meta['language_info']['name'] == 'python', nb.name
