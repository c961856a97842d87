"The speed run (appendix 94b) and the small CNN's row of the benchmark (notebook 91), on tiny synthetic data."
import json, os, platform
import pytest, torch
from torch import nn
from mnist_scratch.blocks import small_cnn
from mnist_scratch.bench import bench_small_cnn, bench_table
from mnist_scratch.sources import MnistData
from mnist_scratch.speedrun import speed_cnn, forward_flops, warmup_decay, keep_freed_memory, speedrun, runs_table, step_faults, ALLOCATION_STEPS
from conftest import cli_code

# an optimizer's first step imports torch._dynamo, which adds warning filters: imported before the state is taken
pytestmark = [pytest.mark.timeout(60), pytest.mark.imports('torch._dynamo')]


def bars(n, seed=0):
    "Ten stacks of `n` 28x28 images: digit `d` is a bright bar at rows 2d..2d+2 over faint noise."
    g = torch.Generator().manual_seed(seed)
    stacks = []
    for d in range(10):
        x = torch.rand(n, 28, 28, generator=g)*0.2
        x[:, 2*d:2*d+3, 4:24] += 0.8
        stacks.append(x)
    return stacks

def tiny_data(n_train=20, n_test=5): return MnistData(bars(n_train, 0), bars(n_test, 1))

@pytest.mark.global_rng # builds models from the global generators
def test_flops_counted_by_hand():
    "Two FLOPs per multiply-add, of every convolution and linear layer: the layer sizes worked out independently."
    assert forward_flops(small_cnn()) == 2*(28*28*16*1*5*5 + 14*14*32*16*5*5 + 32*7*7*10)
    # the strided second convolution: 7x7 outputs, not 14x14; batch norm adds no products
    assert forward_flops(speed_cnn()) == 2*(28*28*16*1*5*5 + 7*7*32*16*5*5 + 32*7*7*10)
    assert forward_flops(speed_cnn(8, 16, 3)) == 2*(28*28*8*9 + 7*7*16*8*9 + 16*7*7*10)
    assert forward_flops(speed_cnn(pool=False)) == 2*(14*14*16*1*5*5 + 7*7*32*16*5*5 + 32*7*7*10) # both strided
    assert forward_flops(nn.Linear(784, 10), (784,)) == 2*784*10

@pytest.mark.global_rng # builds models from the global generators
def test_speed_cnn_is_small_cnn_with_batch_norm():
    "small_cnn's convolutions, less their biases; the first pooled, the second strided; then batch norm (a scale and a shift per channel) and ReLU."
    m = speed_cnn()
    assert sum(p.numel() for p in m.parameters()) == 28938 - (16 + 32) + 2*(16 + 32)
    assert [type(l).__name__ for l in m] == ['Conv2d', 'MaxPool2d', 'BatchNorm2d', 'ReLU', 'Conv2d', 'BatchNorm2d', 'ReLU', 'Flatten', 'Linear']
    convs = [c for c in m if isinstance(c, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size) for c in convs] == \
           [(c.in_channels, c.out_channels, c.kernel_size) for c in small_cnn() if isinstance(c, nn.Conv2d)]
    assert [c.stride for c in convs] == [(1, 1), (2, 2)] and m(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    assert [type(l).__name__ for l in speed_cnn(pool=False)][:3] == ['Conv2d', 'BatchNorm2d', 'ReLU'] and speed_cnn(pool=False)[0].stride == (2, 2)

def test_stride_two_keeps_what_pooling_would_see():
    "A stride-2 convolution computes exactly the top-left output of each 2x2 window of the full one: a quarter of them."
    g = torch.Generator().manual_seed(0)
    x, w = torch.randn(3, 16, 14, 14, generator=g), torch.randn(32, 16, 5, 5, generator=g)
    full, strided = torch.nn.functional.conv2d(x, w, padding=2), torch.nn.functional.conv2d(x, w, stride=2, padding=2)
    assert strided.shape == (3, 32, 7, 7) and torch.allclose(strided, full[..., ::2, ::2], atol=1e-4)

SMALL = dict(steps=10, sizes=(4, 4, 2, 2, 1, 1)) # 14 MB a step
ONE_STEP = 14 << 20 >> 12 # pages of one step's blocks

@pytest.mark.skipif(platform.libc_ver()[0] != 'glibc', reason="glibc's malloc only")
def test_keep_freed_memory_stops_the_refaulting(capsys):
    "Ten steps of 14 MB: by default every step's pages are faulted in again; once kept, about one step's."
    assert step_faults(False, **SMALL) > 5*ONE_STEP # the pattern shows the problem in a fresh process
    assert keep_freed_memory() is True
    exec(ALLOCATION_STEPS.format(setup='', **SMALL), {}) # here, where it is now set
    assert int(capsys.readouterr().out) < 2*ONE_STEP

def test_warmup_then_linear_decay():
    f = [warmup_decay(s, 50) for s in range(50)]
    assert f[:10] == pytest.approx([(s + 1)/10 for s in range(10)]) and f[9] == pytest.approx(1)
    assert f[10] == pytest.approx(1) and all(a > b for a, b in zip(f[10:], f[11:])) and f[-1] == pytest.approx(1/40) and min(f) > 0

@pytest.mark.slow
def test_speedrun_learns_and_repeats():
    "Bars are easy: it learns them; the same seed gives the same model; another seed another start."
    data = tiny_data()
    a, b = speedrun(data, seed=3, epochs=6, bs=20, lr=0.05), speedrun(data, seed=3, epochs=6, bs=20, lr=0.05)
    assert a['accuracy'] >= 0.9 and a['accuracy'] == b['accuracy']
    assert a['seconds'] > 0 and a['cpu_seconds'] > 0 and a['images_per_second'] == pytest.approx(6*200/a['seconds'])

def test_speedrun_smaller_than_a_batch():
    "A data set smaller than one batch trains on one batch of all of it, instead of none."
    r = speedrun(tiny_data(2, 1), epochs=1)
    assert r['bs'] == 20 and r['images_per_second'] > 0 and 0 <= r['accuracy'] <= 1

def test_runs_table():
    runs = [dict(seed=s, accuracy=a, seconds=t, cpu_seconds=2*t, images_per_second=1000., load=0.5)
            for s, a, t in ((0, 0.9910, 8.), (1, 0.9890, 10.))]
    lines = runs_table(runs).splitlines()
    assert lines[1].split() == ['0', '99.10%', '8.00', '16.00', '1000', '0.5'] and lines[2].split()[1] == '98.90%'
    assert lines[-1].startswith('mean 99.00% (lowest 98.90%) in 9.00 s (CPU 18.00 s)')

def test_command_on_a_folder(tiny, capsys):
    "`mnist-scratch speedrun`: one line per seed, the summary, and the load before and after."
    assert cli_code('speedrun', '--seeds', '2', '--epochs', '1', '--data', tiny) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith('machine: ') and 'load before' in out[0]
    assert out[1] == 'speed_cnn(16, 32, 5): 1 epoch, batches of 256, lr 0.7'
    assert [l.split()[0] for l in out[3:5]] == ['0', '1'] and out[5].startswith('mean ') and out[6].startswith('load after')

def test_command_options_and_save(tiny, tmp_path, capsys):
    "A smaller network from the command line, each run appended to --save with what `speed_cnn` was given."
    (tmp_path/'runs.jsonl').write_text('{"earlier": 1}\n')
    args = ['--seeds', '1', '--epochs', '1', '--bs', '16', '--channels', '8', '12', '--ks', '3', '--no-pool', '--data', tiny]
    assert cli_code('speedrun', *args, '--save', tmp_path/'runs.jsonl') == 0
    assert capsys.readouterr().out.splitlines()[1].startswith('speed_cnn(8, 12, 3, pool=False): 1 epoch, batches of 16')
    earlier, run = [json.loads(l) for l in (tmp_path/'runs.jsonl').read_text().splitlines()]
    assert earlier == {'earlier': 1} and (run['bs'], run['channels'], run['ks'], run['pool']) == (16, [8, 12], 3, False)

@pytest.mark.timeout(10) # a FIFO opened to write waits for a reader: it must not
@pytest.mark.parametrize('where, says', [('folder', 'is a folder, not a file to append runs to'),
                                         ('fifo', 'is a FIFO, not a file to append runs to'),
                                         ('missing/runs.jsonl', 'cannot be written (its folder does not exist)')])
def test_save_that_cannot_be_written_fails_before_training(tiny, tmp_path, capsys, monkeypatch, where, says):
    (tmp_path/'folder').mkdir(); os.mkfifo(tmp_path/'fifo')
    monkeypatch.setattr('mnist_scratch.speedrun.speedrun', lambda *a, **k: pytest.fail('trained before checking --save'))
    assert cli_code('speedrun', '--seeds', '1', '--data', tiny, '--save', tmp_path/where) == 1
    assert capsys.readouterr().err.splitlines() == [f'mnist-scratch: error: {tmp_path/where}: {says}']

@pytest.mark.parametrize('args, says', [(['--ks', '4'], "invalid choice: 4 (choose from 1, 3, 5, 7)"),
                                        (['--channels', '8', '0'], 'must be a finite number greater than 0, got 0'),
                                        (['--channels', '8', '100000'], 'must be at most 512, got 100000'),
                                        (['--lr', '1e38'], 'must be at most 1e+37, got 1e38'),
                                        (['--seeds', '-1'], 'must be a finite number greater than 0, got -1')])
def test_bad_options_are_usage_errors(args, says, capsys):
    assert cli_code('speedrun', *args) == 2
    assert says in capsys.readouterr().err

def test_bad_data_is_one_line(tmp_path, capsys):
    assert cli_code('speedrun', '--data', tmp_path/'none') == 1
    assert capsys.readouterr().err.splitlines() == [f'mnist-scratch: error: {tmp_path/"none"}: no such file or folder']

def fake_res(small_cnn=None):
    e = dict(post=1., ours=.5, post_torch_dataloader=.8, ours_autograd=.6, matmul_floor=.1, acc_post=.9, acc_ours=.9,
             bytes=188e6, memory_limit=.02, bandwidth=9e9, flops=3.8e9, flops_limit=.02, peak_flops=2e11)
    res = dict(machine=dict(cpu='X', cpus=2, gpu=None, torch='2'), repeat=1, process_epochs=10, load=None, process=None,
               data=dict(source='path', kind='folder', n_train=60000, n_valid=10000), epoch=e, resnet=dict(post=400., ours=1000.))
    if small_cnn is not None: res['small_cnn'] = small_cnn
    return res

def test_bench_table_small_cnn_row():
    "The small CNN's row sits under resnet18's, in the same columns; the speed run's line follows when it ran."
    run = dict(seed=0, epochs=2, accuracy=0.9912, seconds=8.04, cpu_seconds=15.9, images_per_second=14925.)
    lines = bench_table(fake_res(dict(post=6000., ours=15000., run=run))).splitlines()
    resnet, small = (next(l for l in lines if l.startswith(k)) for k in ('resnet18 training', 'small CNN training'))
    assert small.split()[-3:] == ['6000.000', '15000', '2.5x'] and len(small) == len(resnet)
    assert any(l.startswith('small CNN speed run') and '99.12% after 8.0 s of training (CPU 15.9 s), 14925 images/s' in l for l in lines)
    assert not any(l.startswith('small CNN speed run') for l in bench_table(fake_res(dict(post=1., ours=2., run=None))).splitlines())
    assert not any('small CNN' in l for l in bench_table(fake_res()).splitlines()) # a result saved before this row existed

@pytest.mark.slow
def test_bench_small_cnn_tiny():
    r = bench_small_cnn(tiny_data(), n_per_digit=10)
    assert r['post'] > 0 and r['ours'] > 0 and 0 <= r['run']['accuracy'] <= 1 and r['run']['epochs'] == 2
    assert bench_small_cnn(tiny_data(), n_per_digit=10, full=False)['run'] is None
