"""The saved runs notebook 06 reads (appendix 94c's `saved_record`): beside the notebook, else from the repository on
GitHub, here a local server in GitHub's place (`MNIST_SCRATCH_RECORDS_URL`). Every failure is one line naming the file
and the URL, quickly, whatever the server does."""
import configparser, contextlib, json, re, socket, subprocess, time, urllib.request, pytest
from conftest import ROOT, local_server
from mnist_scratch.files import MnistDataError
from mnist_scratch.resnet_runs import saved_record, fetch_record, records_url, resnet18_runs, RECORDS_URL, RECORD_CAP

NBS = ROOT/'nbs'
RECORDS = ['06_full_run.json', 'small_cnn_run.json', '91_seed_runs.jsonl'] # what notebook 06 reads

@pytest.fixture
def serve(monkeypatch):
    "`serve(routes)` starts a local server answering `routes` and points `MNIST_SCRATCH_RECORDS_URL` at it: the paths asked."
    with contextlib.ExitStack() as servers:
        def start(routes):
            server = servers.enter_context(local_server(routes))
            monkeypatch.setenv(RECORDS_URL, f'{server.url}/nbs')
            return server.asked
        yield start

def files(*names, prefix='/nbs/'): return {prefix + n: (200, (NBS/n).read_bytes(), True) for n in names}

def one_line_error(f, *parts):
    "The `MnistDataError` that `f()` raises, checked to be one line naming each of `parts` and saying what to do."
    with pytest.raises(MnistDataError) as e: f()
    msg = str(e.value)
    assert '\n' not in msg and 'download it' in msg, msg
    for p in parts: assert p in msg, (p, msg)
    return msg

@pytest.mark.timeout(10)
def test_read_online_when_not_beside(serve, tmp_path):
    asked = serve(files(*RECORDS))
    assert saved_record('small_cnn_run.json', tmp_path) == json.loads((NBS/'small_cnn_run.json').read_text())
    lines = (NBS/'91_seed_runs.jsonl').read_text().splitlines()
    assert saved_record('91_seed_runs.jsonl', tmp_path) == [json.loads(l) for l in lines if l.strip()]
    assert resnet18_runs(saved=tmp_path/'06_full_run.json') == json.loads((NBS/'06_full_run.json').read_text())
    assert asked == ['/nbs/small_cnn_run.json', '/nbs/91_seed_runs.jsonl', '/nbs/06_full_run.json']
    assert list(tmp_path.iterdir()) == [] # kept in memory: nothing written beside the notebook

@pytest.mark.timeout(10)
def test_beside_the_notebook_wins(serve, tmp_path):
    asked = serve({'/nbs/small_cnn_run.json': (200, b'{"online": true}', True)})
    (tmp_path/'small_cnn_run.json').write_text('{"beside": true}')
    assert saved_record('small_cnn_run.json', tmp_path) == {'beside': True}
    assert asked == []

@pytest.mark.timeout(10)
def test_a_clean_copy_in_a_clone_reads_nbs(serve, tmp_path):
    "clean/06_resnet.ipynb in a clone: the saved runs are in ../nbs, offline too."
    asked = serve({})
    (tmp_path/'clean').mkdir(); (tmp_path/'nbs').mkdir()
    (tmp_path/'nbs'/'small_cnn_run.json').write_text('{"in": "nbs"}')
    assert saved_record('small_cnn_run.json', tmp_path/'clean') == {'in': 'nbs'}
    assert asked == []

@pytest.mark.timeout(10)
def test_closed_port_is_one_line_quickly(monkeypatch, tmp_path):
    with socket.socket() as s: # a port nothing listens on once closed
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    monkeypatch.setenv(RECORDS_URL, f'http://127.0.0.1:{port}')
    start = time.monotonic()
    one_line_error(lambda: saved_record('small_cnn_run.json', tmp_path), 'small_cnn_run.json', f'http://127.0.0.1:{port}/small_cnn_run.json')
    assert time.monotonic() - start < 2

@pytest.mark.timeout(10)
def test_server_that_never_answers_is_one_line_within_the_timeout(monkeypatch):
    with socket.socket() as s: # listens (the connection is made) but never reads or answers
        s.bind(('127.0.0.1', 0)); s.listen(1)
        monkeypatch.setenv(RECORDS_URL, f'http://127.0.0.1:{s.getsockname()[1]}')
        start = time.monotonic()
        one_line_error(lambda: fetch_record('06_full_run.json', timeout=0.2), '06_full_run.json')
        assert time.monotonic() - start < 1

@pytest.mark.timeout(10)
def test_a_hang_outside_the_socket_is_bounded_too(monkeypatch):
    "A name lookup that hangs (no socket timeout applies to it): the whole read is bounded all the same."
    monkeypatch.setenv(RECORDS_URL, 'http://example.invalid/nbs')
    monkeypatch.setattr(urllib.request, 'urlopen', lambda *a, **k: time.sleep(5))
    start = time.monotonic()
    msg = one_line_error(lambda: fetch_record('small_cnn_run.json', timeout=0.1), 'small_cnn_run.json', 'http://example.invalid/nbs/small_cnn_run.json')
    assert 'no answer in time' in msg and time.monotonic() - start < 0.6

@pytest.mark.timeout(10)
@pytest.mark.parametrize('length', [True, False], ids=['said', 'unsaid'])
def test_answer_over_the_cap(serve, tmp_path, length):
    "Too large, whether the server says so in Content-Length or not: refused, reading at most the cap and a byte."
    serve({'/nbs/06_full_run.json': (200, b' '*(RECORD_CAP + 1000), length)})
    msg = one_line_error(lambda: saved_record('06_full_run.json', tmp_path), '06_full_run.json', '/nbs/06_full_run.json')
    assert f'larger than {RECORD_CAP:,} bytes' in msg

@pytest.mark.timeout(10)
@pytest.mark.parametrize('body', [b'{"post": ', b'<html>Not JSON</html>', b'\xff\xfe{}', b''], ids=['cut', 'html', 'not-utf8', 'empty'])
def test_invalid_json_online(serve, tmp_path, body):
    serve({'/nbs/small_cnn_run.json': (200, body, True), '/nbs/91_seed_runs.jsonl': (200, b'{"a": 1}\n' + body, True)})
    for name in ('small_cnn_run.json', '91_seed_runs.jsonl'):
        if name.endswith('.jsonl') and body == b'': continue # an empty last line is no line: the file is valid
        one_line_error(lambda: saved_record(name, tmp_path), f'{name} from http://127.0.0.1:', 'not valid JSON')

@pytest.mark.timeout(10)
def test_invalid_json_beside_names_the_file(tmp_path):
    (tmp_path/'small_cnn_run.json').write_text('{"accuracy": 0.9')
    one_line_error(lambda: saved_record('small_cnn_run.json', tmp_path), 'small_cnn_run.json', 'not valid JSON')

@pytest.mark.timeout(10)
@pytest.mark.parametrize('status', [404, 500])
def test_bad_status(serve, tmp_path, status):
    serve({'/nbs/small_cnn_run.json': (status, b'{"not": "this"}', True)})
    msg = one_line_error(lambda: saved_record('small_cnn_run.json', tmp_path), 'small_cnn_run.json', '/nbs/small_cnn_run.json')
    assert f'HTTP {status}' in msg

def test_default_url_is_the_repository_of_settings_ini(monkeypatch):
    "The package's baked-in settings (what a notebook alone has) give the raw files of settings.ini's repository and branch."
    monkeypatch.delenv(RECORDS_URL, raising=False)
    cfg = configparser.ConfigParser(delimiters=['='])
    cfg.read(ROOT/'settings.ini', encoding='utf-8')
    c = cfg['DEFAULT']
    owner_repo = c['git_url'].split('github.com/', 1)[1]
    assert records_url() == f"https://raw.githubusercontent.com/{owner_repo}/{c['branch']}/{c['nbs_path']}"

@pytest.mark.timeout(30)
def test_the_records_are_committed_where_the_url_points():
    "What GitHub will serve: each record notebook 06 reads is a tracked file of nbs/."
    tracked = subprocess.run(['git', 'ls-files', '--', *(f'nbs/{n}' for n in RECORDS)], cwd=ROOT, capture_output=True, text=True)
    if tracked.returncode: pytest.skip('not a git checkout')
    assert sorted(tracked.stdout.split()) == sorted(f'nbs/{n}' for n in RECORDS)

def test_notebook_06_reads_records_only_through_saved_record():
    "A path read directly would fail alone: 06_resnet names each record only in `saved_record` (or `resnet18_runs`)."
    nb = json.loads((NBS/'06_resnet.ipynb').read_text(encoding='utf-8'))
    code = '\n'.join(''.join(c['source']) for c in nb['cells'] if c['cell_type'] == 'code')
    assert not re.search(r"read_text|read_bytes|open\(|Path\(['\"][^'\"]+\.jsonl?", code)
    assert 'resnet18_runs(' in code and {n for n in RECORDS[1:] if f"saved_record('{n}')" in code} == set(RECORDS[1:])
