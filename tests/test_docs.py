"The website builds offline from the committed notebooks, has a page for each, and every link and image in it resolves."
import configparser, re, subprocess, sys, pytest
from html.parser import HTMLParser
from urllib.parse import urlsplit, unquote
from conftest import ROOT

pytestmark = [pytest.mark.timeout(300), pytest.mark.slow]

@pytest.fixture(scope='module')
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp('site')/'_site'
    r = subprocess.run([sys.executable, str(ROOT/'docs'/'build.py'), '--out', str(out)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return out

class Page(HTMLParser):
    "The ids, the links and the resources (scripts, styles, images, fonts) of one HTML page."
    def __init__(self):
        super().__init__()
        self.ids, self.links, self.resources = set(), [], []
    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if a.get('id'): self.ids.add(a['id'])
        if tag == 'a' and a.get('name'): self.ids.add(a['name'])
        if tag == 'a' and a.get('href') is not None: self.links.append(a['href'])
        if tag in ('script', 'img', 'source', 'iframe') and 'src' in a: self.resources.append((tag, a['src']))
        if tag == 'link' and a.get('href') is not None and a.get('rel') not in ('canonical', 'prev', 'next'):
            self.resources.append((f"link rel={a.get('rel')}", a['href']))

def parse(fn):
    p = Page()
    p.feed(fn.read_text())
    return p

def pages(site): return sorted(site.rglob('*.html'))

def is_remote(url): return urlsplit(url).scheme in ('http', 'https') or url.startswith('//')

BASE = '/mnist-scratch/' # the site's path on its host, as in site_url

def target(page, url, site):
    "The file a relative `url` on `page` points at (a folder's index.html), or `None` if it leaves the site."
    path = unquote(urlsplit(url).path)
    if path.startswith('/'): # absolute on the host, as 404.html links: only within the site's path
        if not path.startswith(BASE): return None
        page, path = site/'index.html', path[len(BASE):]
    t = (page.parent/path).resolve() if path else page
    if t.is_dir(): t = t/'index.html'
    return t if site.resolve() in t.parents or t == site.resolve() else None

def test_every_notebook_has_its_page(site):
    assert (site/'index.html').is_file()
    for nb in sorted((ROOT/'nbs').glob('[0-9]*.ipynb')):
        page = site/'nbs'/f'{nb.stem}.html'
        assert page.is_file(), f'no page for {nb.name}'
        assert len(parse(page).resources) and 'jp-Cell' in page.read_text() # a rendered notebook, its cells
    home = (site/'index.html').read_text()
    assert all(f'nbs/{nb.stem}.html' in home for nb in (ROOT/'nbs').glob('[0-9]*.ipynb')) # linked from the home page

def test_notebook_pages_keep_their_outputs(site):
    "The committed outputs are shown (nothing is re-run): the pictures of notebook 02 and the numbers it printed."
    import json
    nb = json.loads((ROOT/'nbs'/'02_baseline.ipynb').read_text())
    pngs = sum('image/png' in o.get('data', {}) for c in nb['cells'] if c['cell_type'] == 'code' for o in c['outputs'])
    html = (site/'nbs'/'02_baseline.html').read_text()
    assert pngs >= 3 and html.count('src="data:image/png;base64,') == pngs
    assert '82.03' in html # the baseline's accuracy, as committed

def test_every_internal_link_and_image_resolves(site):
    broken, ids = [], {p: parse(p).ids for p in pages(site)}
    for page in pages(site):
        p = parse(page)
        for url in p.links + [u for _, u in p.resources]:
            if is_remote(url) or url.startswith(('mailto:', 'data:')): continue
            t = target(page, url, site)
            if t is None or not t.exists(): broken.append(f'{page.relative_to(site)}: {url}'); continue
            frag = urlsplit(url).fragment
            if frag and t.suffix == '.html' and unquote(frag) not in ids[t]: broken.append(f'{page.relative_to(site)}: {url} (no such anchor)')
    assert not broken, '\n'.join(broken[:30])

def test_nothing_is_fetched_from_the_internet(site):
    "No page loads a font, script or stylesheet from elsewhere, and no stylesheet imports one."
    remote = [f'{page.relative_to(site)}: {tag} {url}' for page in pages(site) for tag, url in parse(page).resources
              if is_remote(url) or url == '']
    for css in site.rglob('*.css'):
        remote += [f'{css.relative_to(site)}: {m}' for m in re.findall(r'(?:@import|url\()\s*[\'"]?((?:https?:)?//[^\'")\s]+)', css.read_text())]
    for page in pages(site):
        remote += [f'{page.relative_to(site)}: style {m}' for m in re.findall(r'(?:@import|url\()\s*[\'"]?((?:https?:)?//[^\'")\s]+)', page.read_text())]
    assert not remote, '\n'.join(remote[:30])

def test_nbdev_links_resolve_on_the_site(site):
    "Every link of `_modidx.py` (what nbdev and its tools link to) names a page of the site and an anchor on it."
    from mnist_scratch._modidx import d
    cfg = configparser.ConfigParser()
    cfg.read(ROOT/'settings.ini')
    base = cfg['DEFAULT']['doc_host'] + cfg['DEFAULT']['doc_baseurl'] + '/'
    assert f'site_url: {base}' in (ROOT/'docs'/'mkdocs.yml').read_text()
    assert (d['settings']['doc_host'] + d['settings']['doc_baseurl'] + '/') == base
    missing = []
    for syms in d['syms'].values():
        for sym, (url, _) in syms.items():
            page, anchor = url.split('#')
            if not (site/page).is_file() or anchor not in parse(site/page).ids: missing.append(f'{sym}: {url}')
    assert not missing, '\n'.join(missing[:30])

def test_reference_links_each_function_to_its_notebook(site):
    html = (site/'sources.html').read_text()
    assert 'id="load_mnist"' in html and 'Load MNIST as an' in html # the docstring
    assert 'href="nbs/93_sources.html"' in html # the notebook that defines it
    assert 'an MNIST folder, a <code>.tgz</code> archive' in html # a parameter's comment, read from the source
