"""Copy the series chart that notebook 90 drew in its committed run to `docs/results.png`, for the README.

Usage: python docs/chart.py. Nothing is executed: the picture is the output of the cell `plot_results(res);`.
"""
import base64, json, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK, CELL, CHART = ROOT/'nbs'/'90_experiments.ipynb', 'plot_results(res);', ROOT/'docs'/'results.png'

def committed_chart(nb=NOTEBOOK):
    "The PNG bytes of the chart in the committed outputs of `nb`."
    for c in json.loads(nb.read_text())['cells']:
        if c['cell_type'] == 'code' and ''.join(c['source']).strip() == CELL:
            pngs = [o['data']['image/png'] for o in c.get('outputs', []) if 'image/png' in o.get('data', {})]
            if pngs: return base64.b64decode(pngs[0])
    sys.exit(f"{nb.name}: no picture in the cell `{CELL}`; run the notebook first.")

if __name__ == '__main__': CHART.write_bytes(committed_chart())
