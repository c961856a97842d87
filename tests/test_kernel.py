"""Notebooks open in JupyterLab unmodified: on opening, JupyterLab writes the kernel's name, display name and language
into `metadata.kernelspec`, and its language_info into `metadata.language_info`; any difference from what the file
holds marks the notebook modified. So each committed notebook holds exactly what the kernel `make setup` installs
reports (nbdev_clean sets the display name to the kernel's name: the Makefile installs the kernel under that display
name). The browser test (test_lab.py) checks the same in JupyterLab itself."""
import json, re, shlex, sys, pytest
from pathlib import Path
from conftest import ROOT

NOTEBOOKS = sorted((ROOT/'nbs').glob('*.ipynb'))

def makefile_kernel():
    "The kernelspec JupyterLab writes for the kernel that the Makefile's `ipykernel install` line installs."
    (line,) = [l for l in (ROOT/'Makefile').read_text().splitlines() if 'ipykernel install' in l and not l.lstrip().startswith('#')]
    args = shlex.split(line.split('>')[0])
    return dict(name=args[args.index('--name') + 1], display_name=args[args.index('--display-name') + 1], language='python')

def meta(nb): return json.loads(nb.read_text(encoding='utf-8'))['metadata']

def test_the_makefile_kernel_is_found_by_the_notebooks_name():
    "Colab, Kaggle and any Jupyter have a `python3` kernel: the notebooks name it, and the Makefile installs ours as it."
    assert makefile_kernel()['name'] == 'python3'

@pytest.mark.parametrize('nb', NOTEBOOKS, ids=lambda p: p.stem)
def test_kernelspec_is_what_the_kernel_reports(nb):
    assert meta(nb)['kernelspec'] == makefile_kernel(), f'{nb.name}: JupyterLab would rewrite its kernelspec on opening'

@pytest.mark.imports('ipykernel.ipkernel') # its import sets warning filters
@pytest.mark.parametrize('nb', NOTEBOOKS, ids=lambda p: p.stem)
def test_language_info_is_what_the_kernel_reports(nb):
    "ipykernel's language_info; its `version` is the Python that last ran the notebook (make setup's, where it is the same)."
    from ipykernel.ipkernel import IPythonKernel
    ours = {k: v for k, v in meta(nb).get('language_info', {}).items() if k != 'version'}
    assert ours == {k: v for k, v in IPythonKernel.language_info.items() if k != 'version'}, f'{nb.name}: {ours}'
    assert re.fullmatch(r'3\.\d+\.\d+', meta(nb)['language_info']['version'])

def test_the_installed_kernel_is_the_makefiles():
    "This environment's kernel, as `make setup` installed it (an older .venv may hold an older display name)."
    spec = Path(sys.prefix)/'share'/'jupyter'/'kernels'/'python3'/'kernel.json'
    if not spec.is_file(): pytest.skip(f'no python3 kernel installed in {sys.prefix}: `make setup` installs it')
    k = json.loads(spec.read_text())
    want = makefile_kernel()
    assert (k['display_name'], k['language']) == (want['display_name'], want['language']), \
        f"{spec}: run `{Path(sys.prefix).name}/bin/python -m ipykernel install --sys-prefix --name python3 --display-name {want['display_name']}`"
    assert Path(k['argv'][0]).is_relative_to(sys.prefix) # this environment's Python
