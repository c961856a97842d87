"""Write the clean notebooks into `clean/`: the story notebooks without their prose and outputs, to work in.

Usage: python docs/clean.py [--out DIR]     (`make clean-nbs`)

As fastbook's `clean/` copies: every code cell stays, without its outputs; of the prose only the headings stay, and
whole the cells a learner works from: the "Your turn" exercises, the questionnaire and the further research, and the
"Open in Colab" links of the title, pointing at the clean copy. The
exercise cells are blank in the story notebooks already, and their checks stay, so a learner gets the same feedback.
Generated, never edited by hand: `tests/test_exercises.py` fails when `clean/` is out of date.
"""
import argparse, json, re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KEEP_WHOLE = ('**Your turn', '## Questionnaire', '## Further research')
LINKS = 'Run this notebook online:'

def story_notebooks():
    "The story notebooks, 01 to 89, in order."
    return [nb for nb in sorted((ROOT/'nbs').glob('[0-8][0-9]_*.ipynb'))]

def clean_markdown(src):
    "A markdown cell as the clean notebook keeps it: whole if a learner works from it, else its headings, else nothing."
    if src.startswith(KEEP_WHOLE): return src
    keep = [l for l in src.splitlines() if re.match(r'#{1,6} ', l)]
    keep += [l.replace('/nbs/', '/clean/').replace('nbs%2F', 'clean%2F') # "Open in Colab" and the others, for this copy
             for l in src.splitlines() if l.startswith(LINKS)]
    return '\n\n'.join(keep) or None

def clean_cell(c):
    "One cell of a clean notebook, or `None` to leave it out."
    src = ''.join(c['source'])
    if c['cell_type'] == 'markdown':
        src = clean_markdown(src)
        return src and {'cell_type': 'markdown', 'metadata': {}, 'source': src.splitlines(keepends=True)}
    if c['cell_type'] == 'code':
        return {'cell_type': 'code', 'execution_count': None, 'metadata': {}, 'outputs': [], 'source': c['source']}

def clean_notebook(nb):
    "The clean version of the notebook `nb` (a dict), with a first cell saying what it is."
    cells = [c for c in map(clean_cell, nb['cells']) if c]
    note = ('> The clean version of this notebook: the code without its outputs, the headings without the prose. Try '
            'to explain each cell before you run it; the full notebook is in `nbs/`.')
    if cells and cells[0]['cell_type'] == 'markdown': cells.insert(1, {'cell_type': 'markdown', 'metadata': {}, 'source': [note]})
    return {'cells': cells, 'metadata': nb['metadata'], 'nbformat': nb['nbformat'], 'nbformat_minor': nb['nbformat_minor']}

def text(nb): return json.dumps(nb, indent=1, ensure_ascii=False) + '\n'

def clean_texts():
    "{file name: text} of every clean notebook."
    return {p.name: text(clean_notebook(json.loads(p.read_text()))) for p in story_notebooks()}

def main(out=ROOT/'clean'):
    out.mkdir(exist_ok=True)
    texts = clean_texts()
    for stale in set(p.name for p in out.glob('*.ipynb')) - set(texts): (out/stale).unlink()
    for name, t in texts.items(): (out/name).write_text(t)
    print(f'{len(texts)} clean notebooks in {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}')

if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--out', type=Path, default=ROOT/'clean')
    main(ap.parse_args().out)
