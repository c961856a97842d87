"""Build the website into `_site/`, offline: the notebooks with their committed outputs, and the library's reference.

Usage: python docs/build.py [--out DIR]

Nothing is executed: mkdocs-jupyter renders each notebook as it is committed. The pages are staged in a temporary
folder (the repository is only read), laid out as nbdev's `_modidx.py` expects its links: the notebooks under
`nbs/`, and one reference page per notebook that exports code at the top, `sources.html#load_mnist` and so on.
"""
import argparse, html, importlib, inspect, json, os, re, shutil, subprocess, sys, tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NBS = ROOT/'nbs'
LIB = 'mnist_scratch'

def title(nb):
    "The notebook's `# Title`, from its first markdown cell."
    for c in json.loads(nb.read_text())['cells']:
        src = ''.join(c['source'])
        if c['cell_type'] == 'markdown' and src.startswith('# '): return src.splitlines()[0][2:].strip()
    return nb.stem

def notebooks():
    "The numbered notebooks in order: (story, appendices); the appendices are numbered 90 and above (93a, 93b: parts of 93)."
    nbs = sorted(NBS.glob('[0-9][0-9]*_*.ipynb'))
    return [nb for nb in nbs if int(nb.name[:2]) < 90], [nb for nb in nbs if int(nb.name[:2]) >= 90]

def answers():
    "The answers pages, one per story notebook: the solutions of its exercises and answers to its questionnaire."
    return sorted((NBS/'answers').glob('[0-9][0-9]*_*.ipynb'))

def page_name(nb):
    "The page of a module's reference, named after its notebook as nbdev names it: `04_softmax.ipynb` is `softmax`."
    return re.sub(r'^\d+[a-zA-Z0-9]*_', '', Path(nb).stem) # nbdev's own rule: `93a_files.ipynb` is `files`

def modules():
    "The library's modules, each with the notebook it is exported from (from the header nbdev writes into it)."
    out = {}
    for py in sorted((ROOT/LIB).glob('*.py')):
        if py.stem.startswith('_'): continue # __init__, _modidx, and __main__ (only `python -m mnist_scratch`)
        m = re.search(r'^# %% \.\./nbs/(\S+\.ipynb)', py.read_text(), re.M) # the notebook of its first cell
        if m: out[py.stem] = m[1]
    return out

def pages(mods):
    "The reference pages, one per notebook as `_modidx.py` links them: {page name: [(module, notebook), ...]}."
    out = {}
    for mod, nb in mods.items(): out.setdefault(page_name(nb), []).append((mod, nb))
    return out

def signature(obj):
    try: return str(inspect.signature(obj))
    except (TypeError, ValueError): return ''

def params(obj):
    "Markdown rows of the parameters that carry a comment in the source (fastcore's docments)."
    from fastcore.docments import docments
    try: docs = docments(obj, full=True)
    except Exception: return ''
    rows = [f"| `{k}` | {v['docment']} |" for k, v in docs.items() if k != 'return' and v.get('docment')]
    return '\n| parameter | meaning |\n|---|---|\n' + '\n'.join(rows) + '\n' if rows else ''

def entry(name, obj, anchor, level, where):
    "The reference entry of one function, class, method or property, with an anchor as `_modidx.py` names it."
    kind = 'class' if inspect.isclass(obj) else 'property' if isinstance(obj, property) else 'function'
    doc = inspect.getdoc(obj.fget if kind == 'property' else obj) or ''
    sig = '' if kind == 'property' else signature(obj)
    head = f'<a id="{anchor}"></a>\n\n{"#" * level} `{name}`\n\n' # the anchor is raw HTML: Markdown would read __init__ as bold
    return head + f"```python\n{kind} {name}{sig}\n```\n\n{doc}\n{'' if kind == 'property' else params(obj)}\n{where}\n\n"

def source_line(obj):
    try: return inspect.getsourcelines(obj.fget if isinstance(obj, property) else obj)[1]
    except (TypeError, OSError): return 0

def module_page(mod, nb):
    "The reference page of one module: every function and class it defines, in source order, and their methods."
    m = importlib.import_module(f'{LIB}.{mod}')
    own = [(n, o) for n, o in vars(m).items()
           if (inspect.isfunction(o) or inspect.isclass(o)) and getattr(o, '__module__', None) == m.__name__]
    own.sort(key=lambda no: source_line(no[1]))
    public = set(getattr(m, '__all__', []))
    lines = [f"# `{LIB}.{mod}`\n\n{inspect.getdoc(m) or ''}\n\nExported from the notebook [{nb}](nbs/{nb}); "
             "the notebook is the source, this module is generated from it.\n\n"]
    for group, members in (('Public', [no for no in own if no[0] in public]), ('Internal helpers', [no for no in own if no[0] not in public])):
        if not members: continue
        lines.append(f"## {group}\n\n")
        for name, obj in members:
            where = lambda o: f"Defined in [{nb}](nbs/{nb}): `{LIB}/{mod}.py`, line {source_line(o)}."
            lines.append(entry(name, obj, name.lower(), 3, where(obj)))
            if inspect.isclass(obj):
                for k, v in vars(obj).items():
                    if inspect.isfunction(v) or isinstance(v, property):
                        lines.append(entry(f'{name}.{k}', v, f'{name}.{k}'.lower(), 4, where(v)))
    return ''.join(lines)

def summary(mod):
    "A module's docstring; a notebook's second module has none (nbdev writes one per notebook), so its public names."
    m = importlib.import_module(f'{LIB}.{mod}')
    return (m.__doc__ or '').strip() or ', '.join(f'`{n}`' for n in getattr(m, '__all__', []))

def api_index(mods):
    rows = '\n'.join(f"| [`{LIB}.{m}`]({page_name(nb)}.md) | [{nb}](nbs/{nb}) | {summary(m)} |" for m, nb in mods.items())
    return (f"# The library's reference\n\nEvery function and class of the `{LIB}` package, generated from the code and its "
            "docstrings. Each module is exported from one notebook, which explains it and shows it at work. "
            "The modules follow the data: files, images, the cache, archives and sources, then data, metrics, training, "
            "the models and losses, model files, the experiments, the report and the benchmark, and the command line; "
            "each imports only modules before it.\n\n"
            f"| module | notebook | what it does |\n|---|---|---|\n{rows}\n")

LINK = re.compile(r'\]\((?!https?:)([^)\s]+?)\.ipynb(#[^)\s]*)?\)')

DIRECTIVE = re.compile(r'^#\|.*\n?', re.M)

def for_reading(c):
    "The cell as a reader sees it, as nbdev's own docs show it: `#| hide` cells dropped, `#| ...` lines removed."
    src = ''.join(c['source'])
    if c['cell_type'] == 'markdown': c['source'] = LINK.sub(lambda m: f"]({m[1]}.html{m[2] or ''})", src)
    elif c['cell_type'] == 'code':
        if re.search(r'^#\|\s*hide\s*$', src, re.M): return None
        c['source'] = DIRECTIVE.sub('', src)
        if not c['source'].strip() and not c.get('outputs'): return None
    return c

def plain(md):
    "The first sentence of the last paragraph of a markdown text (the one right above a picture), without markup: an alt text."
    paras = [p for p in re.split(r'\n\s*\n', md) if p.strip() and not re.match(r'\s*#', p)] or [md]
    text = re.sub(r'^\s*(\d+\.|[-*>])\s+', '', paras[-1], flags=re.M) # list markers and quotes
    text = re.sub(r'!?\[([^\]]*)\]\([^)]*\)', r'\1', text) # links and pictures: their text
    text = ' '.join(re.sub(r'[`*#|]', '', text).split()) # names keep their underscores
    m = re.match(r'(.{12,}?[.!?])(\s|$)', text)
    return (m[1] if m else text)[:300].rstrip(':')

def alt_text(c, before):
    "What the pictures of the code cell `c` show, for readers who cannot see them: its first comment, else the prose before it."
    comments = [l.strip().lstrip('#').strip() for l in ''.join(c['source']).splitlines() if re.match(r'\s*#(?!\|)', l)]
    if comments and comments[0]: return comments[0][:1].upper() + comments[0][1:] # a comment is lower-case prose
    return plain(before) or 'A chart drawn by the code above'

IMAGES = ('image/png', 'image/jpeg')

def with_alt(c, before):
    "The code cell `c` with each picture it outputs as HTML carrying an alt text (nbconvert would write a placeholder)."
    pics = [o for o in c.get('outputs', []) if set(o.get('data', {})) & set(IMAGES) and 'text/html' not in o['data']]
    for i, o in enumerate(pics, 1):
        kind = next(k for k in IMAGES if k in o['data'])
        data = re.sub(r'\s', '', ''.join(o['data'][kind])) # base64, as one line
        alt = alt_text(c, before) + (f' (picture {i} of {len(pics)})' if len(pics) > 1 else '')
        o['data'] = {'text/html': f'<img src="data:{kind};base64,{data}" alt="{html.escape(alt)}" '
                                  'style="max-width: 100%">'}
    return c

def stage_notebook(src, dest):
    "Copy the notebook `src` to `dest` for reading, its links to other notebooks pointing at their pages."
    nb = json.loads(src.read_text())
    cells, before = [], ''
    for c in nb['cells']:
        if c['cell_type'] == 'code': c = with_alt(c, before)
        else: before = ''.join(c['source'])
        cells.append(c)
    nb['cells'] = [c for c in map(for_reading, cells) if c is not None]
    dest.write_text(json.dumps(nb))

def home_files():
    "The repository files (pictures, say) that the home page links to, relative to the repository's root."
    src = ''.join(''.join(c['source']) for c in json.loads((NBS/'index.ipynb').read_text())['cells'])
    links = re.findall(r'\]\((?!https?:|#)([^)\s]+)\)', src)
    return sorted({l for l in links if not l.endswith('.ipynb') and (ROOT/l).is_file() and ROOT in (ROOT/l).resolve().parents})

def stage(dest):
    "Lay out the site's sources in `dest` and return the mkdocs configuration for them."
    story, appendices = notebooks()
    (dest/'nbs').mkdir(parents=True)
    stage_notebook(NBS/'index.ipynb', dest/'index.ipynb')
    for f in home_files(): # the home page is also README.md: its links are relative to the repository's root
        (dest/f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT/f, dest/f)
    for nb in story + appendices: stage_notebook(nb, dest/'nbs'/nb.name)
    (dest/'nbs'/'answers').mkdir()
    for nb in answers(): stage_notebook(nb, dest/'nbs'/'answers'/nb.name)
    if (NBS/'images').is_dir(): shutil.copytree(NBS/'images', dest/'nbs'/'images', dirs_exist_ok=True)
    mods = modules()
    for page, ms in pages(mods).items(): (dest/f'{page}.md').write_text('\n'.join(module_page(m, nb) for m, nb in ms))
    (dest/'api.md').write_text(api_index(mods))
    shutil.copy(ROOT/'docs'/'extra.css', dest/'extra.css')
    cfg = (ROOT/'docs'/'mkdocs.yml').read_text()
    nav = ['nav:', '  - Home: index.ipynb', '  - The story:']
    quoted = lambda nb: "'" + title(nb).replace("'", "''") + "'" # YAML's single quotes: `MNIST's` needs its ' doubled
    nav += [f"      - {quoted(nb)}: nbs/{nb.name}" for nb in story]
    nav += ['  - Appendices:'] + [f"      - {quoted(nb)}: nbs/{nb.name}" for nb in appendices]
    nav += ['  - Answers:'] + [f"      - {quoted(nb)}: nbs/answers/{nb.name}" for nb in answers()]
    nav += ['  - Reference:', '      - api.md'] + [f"      - '{', '.join(f'{LIB}.{m}' for m, _ in ms)}': {page}.md" for page, ms in pages(mods).items()]
    return cfg + '\n' + '\n'.join(nav) + '\n'

def without_mathjax(site):
    "Drop the empty MathJax `<script src="">` that mkdocs-jupyter writes into every notebook page (no page has math)."
    for page in Path(site).rglob('*.html'):
        html = page.read_text()
        if '<script src=""> </script>' in html: page.write_text(html.replace('<script src=""> </script>', ''))

def build(out):
    "Build the site into `out`; return mkdocs' exit code."
    out = Path(out).resolve()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp)/'mkdocs.yml'
        cfg.write_text(stage(Path(tmp)/'site-src'))
        env = dict(os.environ, NO_MKDOCS_2_WARNING='1') # mkdocs' notice about its own future, not about this site
        r = subprocess.run([sys.executable, '-m', 'mkdocs', 'build', '--strict', '--quiet', '-f', str(cfg), '-d', str(out)],
                           cwd=tmp, env=env)
    if r.returncode == 0: without_mathjax(out)
    return r.returncode

if __name__ == '__main__':
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--out', default=str(ROOT/'_site'), help='the folder to build into (default: _site)')
    sys.exit(build(p.parse_args().out))
