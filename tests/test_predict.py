"`mnist-scratch predict` loads only what the models need: resnet18 rebuilt in plain PyTorch, without fastai or torchvision."
import json, subprocess, sys, pytest, torch
from conftest import ENTRY, write_png, digit_image
from mnist_scratch.models import TrainedModel, save_model, load_model, resnet18_model

def _trained_like(net, seed=1):
    "`net` with every weight and running statistic set to random numbers (as a trained net has), so no layer is a no-op."
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for k, t in net.state_dict().items():
            if t.is_floating_point(): t.copy_(torch.rand(t.shape, generator=g) + 0.5 if 'running_var' in k else torch.randn(t.shape, generator=g) * 0.1)
    return net.eval()

@pytest.mark.slow
@pytest.mark.timeout(120)
@pytest.mark.imports('fastai.vision.all')
def test_plain_resnet18_is_fastais():
    "The plain-PyTorch resnet18 has the keys and shapes of fastai's `create_vision_model(resnet18, n_out=10, n_in=1)` and, with its weights, the same scores."
    from fastai.vision.all import create_vision_model, resnet18
    from mnist_scratch.fast import use_center_convs
    from mnist_scratch.training import seeded
    with seeded(0): ref = _trained_like(use_center_convs(create_vision_model(resnet18, n_out=10, pretrained=False, n_in=1)))
    ours = resnet18_model()
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in ref.state_dict().items()}
    assert list(ours.state_dict()) == list(ref.state_dict()) # the same order too: the same layers in the same places
    ours.load_state_dict(ref.state_dict())
    x = torch.rand(16, 1, 28, 28, generator=torch.Generator().manual_seed(2))
    with torch.no_grad(): want, got = ref.eval()(x), ours.eval()(x)
    assert want.abs().max() > 1e-3 # not a degenerate net whose scores are all zero
    assert torch.allclose(got, want, rtol=1e-5, atol=1e-5), (got - want).abs().max()
    with torch.no_grad(): # and on 64x64 images, where the last convolutions see 2x2, not 1x1
        x = torch.rand(2, 1, 64, 64, generator=torch.Generator().manual_seed(3))
        assert torch.allclose(ours(x), ref(x), rtol=1e-5, atol=1e-5)

@pytest.mark.timeout(60)
def test_resnet18_loads_as_saved(tmp_path):
    "A saved resnet18 loads into the meta-built net with the file's own tensors, and answers as the net that was saved."
    net = _trained_like(resnet18_model())
    save_model(TrainedModel('resnet18', 'resnet18', net, dict(accuracy=0.5)), tmp_path/'resnet18.pt')
    back = load_model(tmp_path/'resnet18.pt')
    assert all(t.device.type == 'cpu' for t in back.params.state_dict().values()) # nothing left on the meta device
    x = torch.rand(3, 28, 28, generator=torch.Generator().manual_seed(4))
    with torch.no_grad(): want = net(x[:, None])
    assert torch.equal(back.scores(x), want) # the same weights, the same operations: the same numbers

def test_meta_build_draws_no_random_numbers():
    "Building the net to load into allocates nothing and draws nothing: every tensor is on the meta device."
    before = torch.get_rng_state()
    net = resnet18_model(init=False)
    assert torch.equal(torch.get_rng_state(), before)
    assert {t.device.type for t in net.state_dict().values()} == {'meta'}

@pytest.mark.slow
@pytest.mark.timeout(120)
def test_predict_imports_neither_fastai_nor_torchvision(tmp_path):
    "`mnist-scratch predict` with a resnet18 among the models answers without importing fastai or torchvision."
    models = tmp_path/'models'
    save_model(TrainedModel('resnet18', 'resnet18', _trained_like(resnet18_model()), dict(accuracy=0.5)), models/'resnet18.pt')
    save_model(TrainedModel('linear-ce', 'linear_model', [torch.zeros(784, 10), torch.zeros(10)], dict(accuracy=0.1)), models/'linear-ce.pt')
    write_png(tmp_path/'d.png', digit_image(3))
    check = (f"import sys; sys.argv = ['mnist-scratch', 'predict', {str(tmp_path/'d.png')!r}, '--models', {str(models)!r}, '--json']\n"
             f"try: {ENTRY}\nfinally: print(sorted({{m.split('.')[0] for m in sys.modules}} & {{'fastai', 'torchvision'}}), file=sys.stderr)")
    r = subprocess.run([sys.executable, '-c', check], capture_output=True, text=True, timeout=110)
    assert r.returncode == 0, r.stderr
    assert r.stderr.strip().splitlines()[-1] == '[]', r.stderr
    assert set(json.loads(r.stdout)[0]['predictions']) == {'resnet18', 'linear-ce'}
