"""The answers pages (`nbs/answers/`): one answer per questionnaire question of their story notebook, in order, each quoting
its question and linking the section of the story notebook that teaches it, with the anchor the site gives that heading."""
import json, re, unicodedata, pytest
from conftest import ROOT

NBS = ROOT/'nbs'
ANSWERS = NBS/'answers'
PAGES = sorted(ANSWERS.glob('[0-9]*.ipynb'))
REQUIRED = ['01_loading', '02_baseline', '03_linear', '04_softmax', '05_mlp', '06_building_blocks', '06_resnet', '07_your_digits'] # every story notebook
QUESTION = re.compile(r'\*\*(\d+)\. (.*)\*\*$') # an answer cell's first line: **N. the question**
TAUGHT = re.compile(r'^Taught in: \[([^\]]+)\]\(\.\./([^)#\s]+\.ipynb)#([^)\s]+)\)$', re.M)

def cells(nb): return json.loads(nb.read_text())['cells']

def markdown(nb): return [''.join(c['source']) for c in cells(nb) if c['cell_type'] == 'markdown']

def questions(nb):
    "The questions of a story notebook's `## Questionnaire`, each on one line (a question's wrapped lines joined by a space)."
    src = next((s for s in markdown(nb) if re.search(r'^## Questionnaire\s*$', s, re.M)), None)
    assert src is not None, f'{nb.name} has no `## Questionnaire`'
    part = re.split(r'^## Questionnaire\s*$', src, flags=re.M)[1]
    qs = []
    for line in re.split(r'^#{1,6} ', part, flags=re.M)[0].splitlines(): # up to the next heading (`## Further research`)
        m = re.match(r'(\d+)\. (.*)', line)
        if m:
            assert int(m[1]) == len(qs) + 1, f'{nb.name}: question {m[1]} follows question {len(qs)}'
            qs.append(m[2].strip())
        elif line.strip() and qs and line.startswith(' '): qs[-1] += ' ' + line.strip() # a wrapped question goes on
    return qs

def slugify(heading):
    "The id the site gives a heading: mkdocs-jupyter's slugify of the heading's text (its Markdown removed)."
    text = re.sub(r'\[([^\]]*)\]\([^)]*\)', r'\1', heading) # a link reads as its text
    text = re.sub(r'[`*]|(?<!\w)_|_(?!\w)', '', text).strip() # code and emphasis marks are not text
    text = unicodedata.normalize('NFKD', text).encode('ascii', 'ignore').decode('ascii')
    text = re.sub(r'[^\w\s-]', '', text).strip().lower()
    return re.sub(r'[-\s]+', '-', text)

def headings(nb):
    "The headings of a notebook's Markdown cells (not the `#` lines of a fenced code block), as {id: heading}."
    out = {}
    for src in markdown(nb):
        fenced = False
        for line in src.splitlines():
            if line.lstrip().startswith(('```', '~~~')): fenced = not fenced
            elif not fenced and (m := re.match(r'#{1,6} (.+?)\s*#*\s*$', line)): out.setdefault(slugify(m[1]), m[1])
    return out

def answers(page):
    "The answer cells of a page: Markdown cells whose first line is `**N. question**` (solution code cells may sit between)."
    return [s for s in markdown(page) if QUESTION.match(s.splitlines()[0] if s else '')]

def test_the_story_notebooks_of_issue_28_have_answers_pages():
    assert [p.stem for p in PAGES if p.stem in REQUIRED] == REQUIRED, f'answers pages: {[p.name for p in PAGES]}'

@pytest.mark.parametrize('page', PAGES, ids=lambda p: p.stem)
def test_the_page_names_its_notebook(page):
    "Named as its story notebook, which exists; titled `# Answers: 01 · <the notebook's title>`, with a link to it."
    story = NBS/page.name
    assert story.is_file(), f'{page.name}: no story notebook nbs/{page.name}'
    title = markdown(story)[0].splitlines()[0].removeprefix('# ').strip()
    first = cells(page)[0]
    assert first['cell_type'] == 'markdown'
    head, *rest = ''.join(first['source']).splitlines()
    assert head == f'# Answers: {page.name[:2]} · {title}'
    assert f'> The questionnaire of [{page.name[:2]} · {title}](../{page.name}), answered. Try each question first.' in rest

def answer_problems(page, story):
    "What is wrong with the answer cells of `page` against the questionnaire of `story`: a list of lines, empty if nothing."
    qs, cells_ = questions(story), answers(page)
    quoted = [QUESTION.match(s.splitlines()[0]).groups() for s in cells_]
    if [int(n) for n, _ in quoted] != list(range(1, len(quoted) + 1)): return [f'answers numbered {[n for n, _ in quoted]}']
    bad = [f'{len(quoted)} answers for {len(qs)} questions'] if len(quoted) != len(qs) else []
    for i, ((_, q), expected) in enumerate(zip(quoted, qs), 1):
        if q != expected: bad.append(f'question {i}:\n  quoted: {q}\n  asked:  {expected}')
    bad += [f'question {i} has no answer, only its question' for i, s in enumerate(cells_, 1)
            if len(TAUGHT.sub('', '\n'.join(s.splitlines()[1:])).strip()) < 20]
    return bad

def link_problems(page, nbs=NBS):
    "What is wrong with the `Taught in:` links of `page` (one per answer, to a heading of a notebook in `nbs`)."
    bad, seen = [], {}
    for i, s in enumerate(answers(page), 1):
        links = TAUGHT.findall(s)
        if len(links) != 1: bad.append(f'question {i}: {len(links)} `Taught in:` links'); continue
        text, target, anchor = links[0]
        nb = nbs/target
        if '/' in target or not nb.is_file(): bad.append(f'question {i}: no notebook nbs/{target}'); continue
        heads = seen[target] = seen.get(target) or headings(nb)
        if anchor not in heads: bad.append(f'question {i}: {target} has no heading with the id #{anchor}')
        elif slugify(text) != anchor: bad.append(f'question {i}: the link says [{text}] but points to #{anchor} ({heads[anchor]!r})')
    return bad

@pytest.mark.parametrize('page', PAGES, ids=lambda p: p.stem)
def test_one_answer_per_question_in_order(page):
    "Every question of the story notebook, quoted word for word, in order, once, each with an answer."
    bad = answer_problems(page, NBS/page.name)
    assert not bad, f'{page.name}:\n' + '\n'.join(bad)

@pytest.mark.parametrize('page', PAGES, ids=lambda p: p.stem)
def test_each_answer_links_the_heading_that_teaches_it(page):
    "One `Taught in: [heading](../NB.ipynb#id)` per answer: the notebook exists and has that heading, with that id."
    bad = link_problems(page)
    assert not bad, f'{page.name}:\n' + '\n'.join(bad)

def edited(tmp_path, name, old, new):
    "A copy of the story notebook `name` in `tmp_path`, with `old` replaced by `new` in its Markdown."
    nb = json.loads((NBS/name).read_text())
    hits = 0
    for c in nb['cells']:
        src = ''.join(c['source'])
        if c['cell_type'] == 'markdown' and old in src: c['source'], hits = src.replace(old, new), hits + 1
    assert hits, f'{old!r} is not in {name}'
    (tmp_path/name).write_text(json.dumps(nb))
    return tmp_path/name

def test_a_question_without_an_answer_fails(tmp_path):
    "A question added to the questionnaire (last, or in the middle) and a reworded one are each caught."
    page = ANSWERS/'02_baseline.ipynb'
    n = len(questions(NBS/'02_baseline.ipynb'))
    nb = json.loads((NBS/'02_baseline.ipynb').read_text())
    cell = next(c for c in nb['cells'] if '## Questionnaire' in ''.join(c['source']))
    head, sep, rest = ''.join(cell['source']).partition('\n## Further research') # in the same cell, or in the next one
    cell['source'] = head.rstrip('\n') + f'\n{n+1}. A question nobody answered?\n' + sep + rest
    (added := tmp_path/'02_baseline.ipynb').write_text(json.dumps(nb))
    assert questions(added)[-1] == 'A question nobody answered?'
    assert f'{n} answers for {n+1} questions' in answer_problems(page, added)
    q1 = questions(NBS/'02_baseline.ipynb')[0]
    reworded = edited(tmp_path, '02_baseline.ipynb', q1, q1.replace('What', 'Which'))
    assert answer_problems(page, reworded) == [f"question 1:\n  quoted: {q1}\n  asked:  {q1.replace('What', 'Which')}"]

def test_a_link_to_a_renamed_heading_fails(tmp_path):
    "When the section an answer points to is renamed, the link is reported."
    for nb in NBS.glob('0*.ipynb'): (tmp_path/nb.name).write_text(nb.read_text())
    edited(tmp_path, '02_baseline.ipynb', '## The average digit', '## The mean digit')
    bad = link_problems(ANSWERS/'02_baseline.ipynb', tmp_path)
    assert bad and all('has no heading with the id #the-average-digit' in b for b in bad)

def test_slugify_as_the_site_does():
    for heading, id_ in [('Loading MNIST', 'loading-mnist'), ('All of MNIST, in one line', 'all-of-mnist-in-one-line'),
                         ('How far is an image from an average?', 'how-far-is-an-image-from-an-average'),
                         ('When -log(softmax(x)) breaks', 'when-logsoftmaxx-breaks'),
                         ("PyTorch's cross-entropy", 'pytorchs-cross-entropy'), ('Why `argmax`, not *max*?', 'why-argmax-not-max'),
                         ('28×28 images — one [link](x.ipynb)', '2828-images-one-link')]:
        assert slugify(heading) == id_, heading

@pytest.mark.slow
@pytest.mark.timeout(120)
@pytest.mark.imports('mkdocs_jupyter.convert', 'nbconvert.filters.markdown_mistune')
def test_the_ids_are_those_the_site_renders():
    "`slugify` gives every heading of the story notebooks the id mkdocs-jupyter's renderer writes into the page."
    import mkdocs_jupyter.convert # noqa: F401 (patches nbconvert's headings with the site's ids)
    from nbconvert.filters.markdown_mistune import markdown2html_mistune
    for page in PAGES:
        nb = NBS/page.name
        rendered = set(re.findall(r'<h\d id="([^"]+)"', ''.join(markdown2html_mistune(s) for s in markdown(nb))))
        assert set(headings(nb)) == rendered, nb.name
