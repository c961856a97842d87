"Every committed notebook renders as GitHub and nbconvert show it: HTML with no warnings, pictures as inline PNGs."
import json, subprocess, sys, pytest
from pathlib import Path
from conftest import ROOT


pytestmark = pytest.mark.slow # `make test-fast` leaves these out
NBS = sorted((ROOT/'nbs').glob('*.ipynb'))

@pytest.mark.parametrize('nb', NBS, ids=lambda p: p.stem)
def test_notebook_converts_to_html(nb, tmp_path):
    r = subprocess.run([str(Path(sys.executable).parent/'jupyter'), 'nbconvert', '--to', 'html', '--output-dir', str(tmp_path), str(nb)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    # nbconvert's lab template cannot take alt text for a matplotlib picture (only the classic one reads it), and says so
    warnings = [l for l in r.stderr.splitlines() if ('WARNING' in l or 'Warning' in l) and 'Alternative text is missing' not in l]
    assert not warnings, warnings
    html = (tmp_path/f'{nb.stem}.html').read_text()
    outs = [o for c in json.loads(nb.read_text())['cells'] if c['cell_type'] == 'code' for o in c['outputs']]
    pngs = sum('image/png' in o.get('data', {}) for o in outs)
    assert html.count('src="data:image/png;base64,') == pngs # every picture inline, none linked from elsewhere
    assert not any(k.startswith('image/') and k != 'image/png' for o in outs for k in o.get('data', {}))
    assert 'Error displaying widget' not in html
