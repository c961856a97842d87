"Hostile or unlucky images, model files and digits (issue 24): each refused at once in one line, or read as a user means it."
import os, zipfile, pytest, torch
import numpy as np
from PIL import Image
from mnist_scratch import models
from mnist_scratch.files import MnistDataError
from mnist_scratch.models import TrainedModel, load_model, load_models, resnet18_model
from mnist_scratch.pictures import open_image, as_grey, NoDigitError
from mnist_scratch.handwriting import to_mnist, predict, prediction_lines
from mnist_scratch.canvas import strokes_image

SEVEN = [[(50, 50), (230, 50), (110, 250)]] # the bar, then the stem: not the same turned or mirrored

@pytest.fixture(scope='module')
def seven():
    "A 7 drawn dark on a white 280x280 page, and the 28x28 digit `to_mnist` makes of it."
    im = strokes_image(SEVEN)
    return im, to_mnist(im)

def one_line(e, fn=None):
    msg = str(e.value)
    assert '\n' not in msg and (fn is None or msg.startswith(str(fn))), msg
    return msg

def denied(monkeypatch, fn):
    "Make `fn` unreadable: by its permissions, or (as root, whom they do not stop) as `open` would refuse it."
    os.chmod(fn, 0)
    if os.geteuid() == 0:
        real = os.open
        def refuse(path, *a, **k):
            if str(path) == str(fn): raise PermissionError(13, 'Permission denied', str(path))
            return real(path, *a, **k)
        monkeypatch.setattr(os, 'open', refuse)

# --- image files ---

@pytest.mark.timeout(10)
def test_an_image_that_is_a_fifo_is_refused_at_once(tmp_path):
    os.mkfifo(tmp_path/'x.png') # opening it to read would wait for a writer forever
    with pytest.raises(MnistDataError) as e: open_image(tmp_path/'x.png')
    assert 'is a FIFO, not an image' in one_line(e, tmp_path/'x.png')

@pytest.mark.timeout(10)
def test_an_image_that_cannot_be_read_says_so(tmp_path, monkeypatch, seven):
    seven[0].save(tmp_path/'seven.png')
    denied(monkeypatch, tmp_path/'seven.png')
    with pytest.raises(MnistDataError) as e: open_image(tmp_path/'seven.png')
    assert one_line(e, tmp_path/'seven.png').endswith(': cannot be read (Permission denied): check its permissions')

@pytest.mark.timeout(10)
@pytest.mark.parametrize('orientation, turn', [(6, Image.Transpose.ROTATE_90), (8, Image.Transpose.ROTATE_270),
                                               (3, Image.Transpose.ROTATE_180)])
def test_a_phone_photo_is_read_upright(tmp_path, orientation, turn):
    "A phone stores the sensor's pixels and a tag saying how to turn them: read as a viewer shows it, not as stored."
    upright = strokes_image(SEVEN).resize((240, 200)).convert('RGB')
    upright.save(tmp_path/'upright.jpg', quality=95)
    exif = Image.Exif()
    exif[0x0112] = orientation # EXIF Orientation
    upright.transpose(turn).save(tmp_path/'phone.jpg', quality=95, exif=exif) # the pixels as the sensor lay
    want = to_mnist(open_image(tmp_path/'upright.jpg'))
    assert open_image(tmp_path/'phone.jpg').size == upright.size
    got = to_mnist(open_image(tmp_path/'phone.jpg'))
    assert (got - want).abs().max() < 0.02 # the same digit, but for JPEG's blocks falling elsewhere
    assert (to_mnist(Image.open(tmp_path/'phone.jpg')) - want).abs().max() < 0.02 # opened by PIL itself too
    assert (to_mnist(np.asarray(Image.open(tmp_path/'phone.jpg'))) - want).abs().mean() > 0.05 # as stored: another picture

@pytest.mark.timeout(10)
@pytest.mark.parametrize('mode', ['RGBA', 'LA'])
@pytest.mark.parametrize('ink', ['white', 'black'])
def test_a_drawing_on_a_transparent_background_is_read(tmp_path, seven, mode, ink):
    "A dark-mode drawing app saves white ink on nothing: the alpha channel carries the drawing."
    page, digit = seven
    alpha = 255 - np.asarray(page) # opaque where the pen went, anti-aliased at the edges
    colour = np.full(alpha.shape, 255 if ink == 'white' else 0, np.uint8)
    a = np.stack([colour] * (3 if mode == 'RGBA' else 1) + [alpha], -1)
    Image.fromarray(a, mode).save(tmp_path/'drawn.png')
    assert torch.allclose(to_mnist(open_image(tmp_path/'drawn.png')), digit, atol=1e-5)
    assert torch.allclose(to_mnist(a), digit, atol=1e-5) # the same pixels as an array

@pytest.mark.timeout(10)
def test_a_transparent_image_with_nothing_on_it_is_blank():
    with pytest.raises(NoDigitError, match='no digit found'): to_mnist(Image.new('RGBA', (50, 50), (255, 255, 255, 0)))

@pytest.mark.timeout(10)
@pytest.mark.parametrize('kind', ['16-bit PNG', '12 bits in a 16-bit PNG', 'float TIFF'])
def test_a_scan_that_does_not_span_its_range_is_read(tmp_path, seven, kind):
    "A scanner's page and ink sit somewhere inside 16 bits, or floats: stretched from the darkest pixel to the brightest."
    page, digit = seven
    v = np.asarray(page).astype(np.float64) / 255 # 1 the page, 0 the ink
    if kind == 'float TIFF':
        Image.fromarray((0.35 + 0.1 * v).astype(np.float32), 'F').save(tmp_path/'scan.tif')
        fn = tmp_path/'scan.tif'
    else:
        lo, hi = (30000, 40000) if kind == '16-bit PNG' else (300, 3800)
        Image.fromarray(np.round(lo + (hi - lo) * v).astype(np.uint16)).save(tmp_path/'scan.png')
        fn = tmp_path/'scan.png'
    im = open_image(fn)
    assert im.mode in ('I;16', 'I', 'F'), im.mode # more than 8 bits, as the scanner wrote it
    assert (to_mnist(im) - digit).abs().max() < 0.01

def test_arrays_outside_0_to_1_are_stretched_but_0_to_1_is_kept(seven):
    page, digit = seven
    v = torch.tensor(np.asarray(page), dtype=torch.float32)
    assert torch.allclose(to_mnist(v * 4 + 1000), digit, atol=1e-4) # any range: stretched
    assert torch.equal(as_grey(v / 255), v / 255) # 0..1: as it is
    with pytest.raises(NoDigitError): to_mnist(torch.full((40, 40), 0.5).index_put_((torch.tensor([9]),), torch.tensor(0.55)))
    with pytest.raises(MnistDataError, match='not numbers'): to_mnist(torch.full((40, 40), float('nan')))

# --- what a learner passes from a notebook ---

@pytest.mark.timeout(10)
def test_channels_first_tensors_and_float_colour_arrays_are_read(seven):
    page, digit = seven
    grey = torch.tensor(np.asarray(page), dtype=torch.float32) / 255
    rgb = torch.stack([grey, grey, grey]) # [3, h, w], as torchvision and fastai hold images
    for img in (grey[None], rgb, rgb.permute(1, 2, 0).numpy(), rgb.permute(1, 2, 0).double().numpy(), (rgb * 255).byte()):
        assert torch.allclose(to_mnist(img), digit, atol=1e-4), getattr(img, 'shape', None)

@pytest.mark.timeout(10)
@pytest.mark.parametrize('shape', [(0, 0), (0, 28), (3, 0, 0)])
def test_an_empty_array_has_no_digit(shape):
    with pytest.raises(NoDigitError) as e: to_mnist(np.zeros(shape))
    assert f'no digit found: the image has no pixels (shape {list(shape)})' == one_line(e)

@pytest.mark.timeout(10)
@pytest.mark.parametrize('shape, words', [((784,), 'shape [784]'), ((10, 28, 28), 'call to_mnist on each image'),
                                          ((2, 3, 28, 28), 'shape [2, 3, 28, 28]'), ((28, 28, 7), 'with 1 to 4 channels')])
def test_to_mnist_refuses_what_is_not_one_image_in_one_line(shape, words):
    with pytest.raises(MnistDataError) as e: to_mnist(torch.zeros(shape))
    assert words in one_line(e)

@pytest.fixture(scope='module')
def linear():
    "A linear model of random weights: what it answers does not matter here, only that predict gives it right."
    g = torch.Generator().manual_seed(0)
    return TrainedModel('linear-ce', 'linear_model', [torch.randn(784, 10, generator=g), torch.randn(10, generator=g)])

@pytest.mark.timeout(10)
def test_predict_takes_a_batch(linear):
    x = torch.rand(5, 28, 28, generator=torch.Generator().manual_seed(1))
    want = [predict([linear], d) for d in x]
    assert predict([linear], x) == want and predict([linear], x[:, None]) == want and predict([linear], x.view(5, 784)) == want
    assert predict([linear], x[0].numpy()) == want[0] and predict([linear], x[:1]) == want[:1]

@pytest.mark.timeout(10)
@pytest.mark.parametrize('digit, words', [(torch.zeros(27, 27), 'a digit of shape [27, 27]: the models take one 28x28 digit'),
                                          (torch.zeros(3, 28), 'shape [3, 28]'),
                                          (torch.arange(784).view(28, 28) % 256, 'pixels from 0 to 255: the models take pixels in 0..1'),
                                          (torch.full((28, 28), float('nan')), 'pixels from nan')])
def test_predict_refuses_what_is_not_a_digit_in_one_line(linear, digit, words):
    with pytest.raises(MnistDataError) as e: predict([linear], digit)
    assert words in one_line(e)

@pytest.mark.timeout(10)
def test_a_model_whose_scores_overflow_gives_no_nan_percent(linear):
    huge = TrainedModel('linear-ce', 'linear_model', [torch.full((784, 10), 3e38), torch.zeros(10)]) # finite, but sums overflow
    with pytest.raises(MnistDataError) as e: predict([linear, huge], torch.ones(28, 28))
    assert one_line(e) == 'model linear-ce: its scores are not finite numbers (it diverged): train it again with a smaller --lr'

def test_model_ids_reach_the_terminal_escaped(linear):
    lines = prediction_lines({'\x1b[2Jlinear\x07': [(7, 0.9), (1, 0.05), (2, 0.01)]})
    assert lines == ['\\x1b[2Jlinear\\x07 7   7:  90.0%  1:   5.0%  2:   1.0%']

# --- model files ---

def model_file(folder, name='linear-ce', **changes):
    "A model file as `save_model` writes it (a linear model of zeros), with `changes` to its dictionary."
    d = dict(format='mnist-scratch model', version=1, id=name, kind='linear_model', info=dict(accuracy=0.9),
             params=[torch.zeros(784, 10), torch.zeros(10)])
    folder.mkdir(parents=True, exist_ok=True)
    torch.save({**d, **changes}, folder/f'{name}.pt')
    return folder/f'{name}.pt'

@pytest.fixture
def computed(monkeypatch):
    "The calls that computed scores with a model: checking a file must look at shapes first, and compute nothing."
    calls = []
    def record(self, x): calls.append(self.id); raise AssertionError('scores computed while checking the file')
    monkeypatch.setattr(TrainedModel, 'scores', record)
    return calls

def refused(fn, *words, error=MnistDataError):
    with pytest.raises(error) as e: load_model(fn)
    msg = one_line(e, fn)
    assert all(w in msg for w in words), msg
    return msg

@pytest.mark.timeout(10)
def test_a_model_file_that_is_a_fifo_is_refused_at_once(tmp_path):
    os.mkfifo(tmp_path/'linear-ce.pt')
    refused(tmp_path/'linear-ce.pt', 'FIFO')
    with pytest.raises(MnistDataError, match='FIFO'): load_models(tmp_path) # `predict --models` reads every .pt there

@pytest.mark.timeout(10)
def test_a_model_that_cannot_be_read_says_so(tmp_path, monkeypatch):
    fn = model_file(tmp_path)
    denied(monkeypatch, fn)
    assert refused(fn).endswith(': cannot be read (Permission denied): check its permissions')

@pytest.mark.timeout(20)
def test_a_tiny_file_claiming_a_huge_weight_is_refused_before_anything_is_computed(tmp_path, computed):
    "A 2 KB file whose weight is a stride-0 view of one number claiming 784x5,000,000 took 46 s and 16 GB."
    fn = model_file(tmp_path, params=[torch.zeros(1).expand(784, 5_000_000), torch.zeros(10)])
    assert fn.stat().st_size < 10_000
    refused(fn)
    assert computed == []

@pytest.mark.timeout(20)
@pytest.mark.parametrize('compressed', [True, False])
def test_a_small_weight_on_a_huge_storage_is_refused(tmp_path, monkeypatch, computed, compressed):
    "A right-shaped 784x10 weight that sits on a storage larger than any model file; compressed, the file is far smaller."
    # 64 MB over the real 60 MB limit is the same case as 4 MB over a 3.75 MB one: writing and deflating 64 MB took 0.3 s
    monkeypatch.setattr(models, 'MAX_MODEL_BYTES', models.MAX_MODEL_BYTES // 16)
    fn = model_file(tmp_path, params=[torch.zeros(1 << 20)[:7840].view(784, 10), torch.zeros(10)])
    if compressed:
        with zipfile.ZipFile(fn) as z: entries = [(i, z.read(i)) for i in z.infolist()]
        with zipfile.ZipFile(fn, 'w', zipfile.ZIP_DEFLATED) as z:
            for i, data in entries: z.writestr(i.filename, data)
        assert fn.stat().st_size < 100_000
    refused(fn)
    assert computed == []

WRONG = {'weights of another shape': dict(params=[torch.zeros(10, 10), torch.zeros(10)]),
         'doubles': dict(params=[torch.zeros(784, 10, dtype=torch.float64), torch.zeros(10)]),
         'three tensors': dict(params=[torch.zeros(784, 10), torch.zeros(10), torch.zeros(10)]),
         'no list': dict(params=torch.zeros(784, 10)),
         'a string among them': dict(params=[torch.zeros(784, 10), 'bias']),
         'an MLP whose layers do not meet': dict(kind='simple_neural_net', params=[torch.zeros(784, 64), torch.zeros(64), torch.zeros(32, 10), torch.zeros(10)])}

@pytest.mark.timeout(10)
@pytest.mark.parametrize('case', WRONG)
def test_parameters_that_do_not_fit_are_refused_before_anything_is_computed(tmp_path, computed, case):
    msg = refused(model_file(tmp_path, **WRONG[case]), 'the parameters do not fit a', 'reproduce')
    assert computed == [], msg

@pytest.mark.timeout(30)
def test_an_mlp_of_another_width_is_read(tmp_path):
    fn = model_file(tmp_path, name='mlp', kind='simple_neural_net', params=[torch.zeros(784, 32), torch.zeros(32), torch.zeros(32, 10), torch.zeros(10)])
    assert load_model(fn).scores(torch.zeros(2, 28, 28)).shape == (2, 10)

@pytest.mark.slow # fastai's import, and building resnet18 to compare with
@pytest.mark.timeout(60)
@pytest.mark.parametrize('change', ['a weight missing', 'a weight of another shape', 'counts as floats'])
@pytest.mark.imports('fastai.vision.all')
def test_a_resnet18_state_dict_that_does_not_fit_is_refused(tmp_path, computed, change):
    sd = dict(resnet18_model().state_dict())
    k = 'layers.0.weight' if 'layers.0.weight' in sd else next(iter(sd))
    if change == 'a weight missing': del sd[k]
    elif change == 'a weight of another shape': sd[k] = torch.zeros(3, 3)
    else: sd = {k: v.float() for k, v in sd.items()} # num_batches_tracked is an integer
    msg = refused(model_file(tmp_path, name='resnet18', kind='resnet18', params=sd), 'the parameters do not fit a resnet18')
    assert computed == [], msg

@pytest.mark.timeout(10)
@pytest.mark.parametrize('bad', [float('nan'), float('inf')])
def test_a_diverged_model_is_refused_and_left_out(tmp_path, bad):
    "A run with too large a learning rate ends with parameters that are not numbers: no model to offer, never `nan%`."
    fn = model_file(tmp_path, name='mlp', kind='simple_neural_net',
                    params=[torch.full((784, 64), bad), torch.zeros(64), torch.zeros(64, 10), torch.zeros(10)])
    assert refused(fn) == f'{fn}: its parameters are not finite numbers (the run diverged): train it again with a smaller --lr'
    with pytest.warns(UserWarning, match='mlp.pt: left out'), pytest.raises(MnistDataError) as e: load_models(tmp_path)
    assert one_line(e) == f'{tmp_path}: every model there diverged (its parameters are not finite numbers): train it again with a smaller --lr'
    model_file(tmp_path) # a good one beside it: used, the diverged one left out with a warning
    with pytest.warns(UserWarning, match='mlp.pt: left out, its parameters are not finite numbers'):
        assert [m.id for m in load_models(tmp_path)] == ['linear-ce']

DAMAGED = {'info a string': dict(info='fast'), 'info a list': dict(info=[0.9]), 'accuracy a string': dict(info=dict(accuracy='90%')),
           'accuracy a list': dict(info=dict(accuracy=[0.9])), 'accuracy a tensor': dict(info=dict(accuracy=torch.tensor(0.9))),
           'accuracy not a number': dict(info=dict(accuracy=float('nan'))), 'accuracy over 1': dict(info=dict(accuracy=90)),
           'version a tensor': dict(version=torch.tensor([1, 1]))}

@pytest.mark.timeout(10)
@pytest.mark.parametrize('case', DAMAGED)
def test_a_damaged_record_is_refused_in_one_line(tmp_path, case):
    fn = model_file(tmp_path, **DAMAGED[case])
    refused(fn)
    with pytest.raises(MnistDataError): load_models(tmp_path) # sorting by accuracy once failed with a TypeError

@pytest.mark.timeout(10)
def test_escape_codes_in_a_model_file_never_reach_the_terminal(tmp_path):
    name = 'linear\x1b[31m-red\x07'
    m = load_model(model_file(tmp_path, name=name))
    assert m.id == name and not any('\x1b' in l or '\x07' in l for l in prediction_lines(predict([m], torch.zeros(28, 28))))
    fn = model_file(tmp_path/'other', id='\x1b]0;owned\x07')
    assert '\x1b' not in refused(fn, 'holds the model of experiment \\x1b]0;owned\\x07')

@pytest.mark.timeout(20)
def test_predict_command_refuses_fifos_at_once(tmp_path, seven, capsys):
    "`predict x.png` with x.png a FIFO, and `predict --models D` with a FIFO .pt in D: one line each, exit 1, no hang."
    from conftest import cli_code
    model_file(tmp_path/'models')
    seven[0].save(tmp_path/'seven.png')
    os.mkfifo(tmp_path/'fifo.png')
    assert cli_code('predict', tmp_path/'fifo.png', '--models', tmp_path/'models') == 1
    err = capsys.readouterr().err
    assert err.splitlines() == [f'mnist-scratch: error: {tmp_path}/fifo.png: is a FIFO, not an image'], err
    os.mkfifo(tmp_path/'models'/'mlp.pt')
    assert cli_code('predict', tmp_path/'seven.png', '--models', tmp_path/'models') == 1
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and 'mlp.pt' in err and 'FIFO' in err, err
