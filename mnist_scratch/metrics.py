__all__ = ['confusion_matrix', 'accuracy_report', 'most_confused', 'plot_confusion', 'plot_curves']

# %% ../nbs/02_baseline.ipynb #f2a00001
import torch

# %% ../nbs/02_baseline.ipynb #1511d792
def confusion_matrix(y, preds, n=10):
    "Counts of (true, predicted) pairs as an `[n, n]` tensor: rows are true digits, columns predictions."
    return torch.bincount(y*n + preds, minlength=n*n).view(n, n)

def accuracy_report(y, preds):
    "Overall and per-digit accuracy (exact counts from the confusion matrix), and the matrix itself."
    cm = confusion_matrix(y, preds)
    return dict(accuracy=cm.diag().sum().item()/cm.sum().item(),
                per_digit=(cm.diag()/cm.sum(1)).tolist(), confusion=cm.tolist())

def most_confused(cm, k=5):
    "The `k` largest off-diagonal cells of a confusion matrix as `(true, predicted, count)`, largest first."
    off = cm.clone().fill_diagonal_(0)
    vals, idxs = off.flatten().topk(k)
    return [(i//cm.shape[1], i%cm.shape[1], v) for i, v in zip(idxs.tolist(), vals.tolist())]

# %% ../nbs/02_baseline.ipynb #afdac596
def plot_confusion(cm, title='', ax=None):
    "Draw the mistakes of a confusion matrix (its diagonal, the correct answers, left blank) with their counts."
    import matplotlib.pyplot as plt
    if ax is None: _, ax = plt.subplots(figsize=(6, 5.5))
    errors = cm.clone().float()
    errors.fill_diagonal_(float('nan')) # blank: the correct answers would swamp the colour scale
    im = ax.imshow(errors, cmap='Reds', vmin=0)
    top = errors.nan_to_num().max()
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            if i != j: ax.text(j, i, int(cm[i, j]), ha='center', va='center', fontsize=8, color='white' if cm[i, j] > top/2 else 'black')
            else: ax.text(j, i, '·', ha='center', va='center', color='grey')
    ax.set(xticks=range(cm.shape[1]), yticks=range(cm.shape[0]), xlabel='predicted digit', ylabel='true digit',
           title=title or 'Mistakes (diagonal left out)')
    ax.figure.colorbar(im, ax=ax, shrink=0.8, label='test images')
    return ax

def plot_curves(curves, ylabel='test accuracy', title='', baseline=None, ax=None):
    "Plot each named per-epoch curve of `curves`; `baseline` adds the no-learning accuracy as a dashed line."
    import matplotlib.pyplot as plt
    if ax is None: _, ax = plt.subplots(figsize=(7, 4))
    for name, ys in curves.items(): ax.plot(range(1, len(ys) + 1), ys, label=name, marker='.' if len(ys) < 10 else None)
    if baseline is not None: ax.axhline(baseline, color='grey', ls='--', label=f'pixel-mean baseline ({baseline:.1%})')
    ax.set(xlabel='epoch', ylabel=ylabel, title=title)
    ax.legend(loc='center left', bbox_to_anchor=(1.01, 0.5)) # outside the axes: a legend never covers a curve
    return ax