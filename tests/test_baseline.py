import pytest, torch
import torch.nn.functional as F
from mnist_scratch.baseline import mean_digits, calculate_error, mnist_distance_mae, mnist_distance_mse, predict_baseline, analyze_digit, per_digit_accuracy, overall_accuracy
from mnist_scratch.data import stack_xy
from mnist_scratch.baseline import confusion_matrix, most_confused

def test_distances_hand_computed():
    a = torch.tensor([[0., 1.], [2., 3.]])
    b = torch.tensor([[1., 1.], [0., 0.]])
    # differences -1, 0, 2, 3: mean |d| = 6/4, mean d^2 = 14/4
    assert mnist_distance_mae(a, b).item() == pytest.approx(1.5)
    assert mnist_distance_mse(a, b).item() == pytest.approx(3.5)
    assert calculate_error(a, b) == pytest.approx((1.5, 3.5))

def test_distances_match_torch_functional():
    g = torch.Generator().manual_seed(0)
    x, m = torch.rand(7, 28, 28, generator=g), torch.rand(28, 28, generator=g)
    assert torch.allclose(mnist_distance_mae(x, m), torch.stack([F.l1_loss(o, m) for o in x]))
    assert torch.allclose(mnist_distance_mse(x, m), torch.stack([F.mse_loss(o, m) for o in x]))
    assert calculate_error(x[0], m) == pytest.approx((F.l1_loss(x[0], m).item(), F.mse_loss(x[0], m).item()))

@pytest.mark.parametrize('dist', [mnist_distance_mae, mnist_distance_mse])
def test_broadcasting_shapes(dist):
    assert dist(torch.ones(5, 28, 28), torch.zeros(28, 28)).shape == (5,)
    assert dist(torch.ones(28, 28), torch.zeros(28, 28)).shape == ()
    assert dist(torch.ones(5, 28, 28), torch.zeros(5, 28, 28)).shape == (5,)

def toy_digits(n=4):
    "Ten classes of 2x2 'images', class d filled with d/10 plus small noise."
    g = torch.Generator().manual_seed(0)
    return [torch.full((n, 2, 2), d/10) + 0.01*torch.randn(n, 2, 2, generator=g) for d in range(10)]

def test_mean_digits():
    ts = [torch.tensor([[[0., 2.]], [[2., 4.]]]) + d for d in range(10)]
    means = mean_digits(ts)
    assert means.shape == (10, 1, 2)
    assert torch.equal(means[3], torch.tensor([[4., 6.]]))

def test_predict_and_accuracy():
    train, test = toy_digits(), toy_digits(3)
    means = mean_digits(train)
    x, y = stack_xy(test)
    assert x.shape == (30, 2, 2) and y.tolist() == [d for d in range(10) for _ in range(3)]
    assert torch.equal(predict_baseline(x, means), y)
    assert analyze_digit(4, test, means) == 1.0
    # move one test 4 onto the average 9: it is now classified as 9
    test[4][0] = means[9]
    assert analyze_digit(4, test, means, mnist_distance_mae) == pytest.approx(2/3)
    acc = per_digit_accuracy(test, means)
    assert acc == pytest.approx([1]*4 + [2/3] + [1]*5)
    assert overall_accuracy(acc, [3]*10) == pytest.approx(29/30)

def test_overall_accuracy_weights_by_class_size():
    assert overall_accuracy([1.0, 0.0], [3, 1]) == pytest.approx(0.75)

def test_confusion_matrix_hand_count():
    y = torch.tensor([0, 0, 1, 2, 2, 2])
    p = torch.tensor([0, 1, 1, 2, 0, 0])
    cm = confusion_matrix(y, p, n=3)
    assert cm.tolist() == [[1, 1, 0], [0, 1, 0], [2, 0, 1]]
    assert most_confused(cm, 2) == [(2, 0, 2), (0, 1, 1)]
