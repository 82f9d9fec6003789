"""Write the exercises notebook and its solutions from one list of cells, so the two stay in step.

    python notebooks/make_exercises.py          # writes exercises.ipynb and solutions.ipynb
    python notebooks/make_exercises.py --check  # exit status 1 if either differs from this file

Each entry of CELLS is ``(kind, blank, solution)``: the exercises notebook takes the blank
text, the solutions notebook the solution; most cells are the same in both.
"""
import pathlib
import sys

import nbformat

HERE = pathlib.Path(__file__).resolve().parent
NOTEBOOKS = {'exercises.ipynb': False, 'solutions.ipynb': True}


def same(kind, text):
    """A cell with the same text in both notebooks."""
    return kind, text, text


def answer(blank, solution, kind='code'):
    """A cell the learner fills in: ``blank`` in the exercises, ``solution`` in the solutions."""
    return kind, blank, solution


CELLS = [
    answer(r"""
# Exercises: softmax regression by hand

Seven exercises on the chapter of `softmax_regression.ipynb`. Each one has a code cell for you to
complete (replace `raise NotImplementedError`, or the `None` answers, with your code) and a cell
that checks it. A checker calls your function on cases you do not see (very large and very small
logits, rows of zeros, float64 inputs, gradients through autograd) and prints `ok: ...`, or
`not yet: ...` with a hint about the first case that failed; it never stops the notebook, so you
can run all cells at any time. (A checker also returns True or False; the `;` after it keeps
that out of the cell's output.)

Worked answers are in `solutions.ipynb`, generated from the same cells (`make_exercises.py`).
Try first.
""", r"""
# Exercises: softmax regression by hand (solutions)

The notebook `exercises.ipynb` with every answer filled in; each checker prints its `ok` line.
Both notebooks are written by `make_exercises.py` from the same cells: edit that file, not
the notebooks.
""", kind='markdown'),
    same('code', """
import math

import gluon_softmax  # before mxnet: puts back the NumPy names MXNet 1.9.1 reads
from mxnet import autograd, np, npx

from gluon_softmax import exercises, scratch, training
from gluon_softmax.exercises import (check_accuracy, check_cross_entropy, check_label_smoothing,
                                     check_learning_rate_answer, check_sgd, check_softmax,
                                     check_train_epoch)

npx.set_np()  # mxnet.np arrays with NumPy semantics, as in the chapter
"""),
    same('markdown', r"""
## 1. A softmax that survives large logits

Softmax turns a row of scores (logits) $\mathbf o$ into probabilities:

$$\mathrm{softmax}(\mathbf o)_j = \frac{\exp(o_j)}{\sum_k \exp(o_k)}.$$

Taken literally, the formula breaks at the edges of floating point. In float32, $\exp(89)$ is
already `inf`, so a logit of 1000 gives $\infty / \infty$ = `nan`; when every logit of a row is
very negative, each $\exp$ rounds to 0 and the row becomes $0 / 0$. The cure costs nothing:
subtracting the same constant $c$ from a whole row leaves softmax unchanged (the factor
$\exp(-c)$ cancels between numerator and denominator), and with $c = \max_k o_k$ the largest
exponent is $\exp(0) = 1$: nothing overflows, and the sum is at least 1.

Write `softmax(X)` for a `(batch, classes)` array, normalising each row, with `mxnet.np`
operations only (autograd must be able to differentiate it) and keeping the dtype of `X`.
One MXNet 1.9.1 quirk: `sum` over the rows of an empty batch, shape `(0, classes)`, fails (at
the next wait). The checker tries one, so return early when `X.shape[0] == 0`.
"""),
    answer('''
def softmax(X):
    """Row-wise softmax of a (batch, classes) array."""
    raise NotImplementedError  # your code here
''', '''
def softmax(X):
    """Row-wise softmax of a (batch, classes) array."""
    if X.shape[0] == 0:
        return X  # nothing to normalise, and MXNet 1.9.1's sum fails on zero rows
    X_exp = np.exp(X - X.max(axis=1, keepdims=True))  # every exponent <= 0: no overflow
    return X_exp / X_exp.sum(axis=1, keepdims=True)  # (batch, classes) / (batch, 1)
'''),
    same('code', 'check_softmax(softmax);'),
    same('markdown', r"""
## 2. Cross-entropy from logits

The loss of one example with label $y$ is $\ell = -\log \mathrm{softmax}(\mathbf o)_y$.
Computing the softmax first and its logarithm afterwards fails even with the stable softmax:
when the true class's probability underflows to 0, $\log 0 = -\infty$. Take the logarithm by
hand instead (the LogSumExp trick):

$$\log \mathrm{softmax}(\mathbf o)_j = o_j - m - \log \sum_k \exp(o_k - m),
\qquad m = \max_k o_k,$$

which is finite for any finite logits. Write `softmax_cross_entropy(o, y)`: logits `o` of
shape `(batch, classes)`, integer labels `y` of shape `(batch,)`, and one loss per example,
shape `(batch,)`. `npx.pick(a, y, axis=1)` reads `a[i, y[i]]` for every row `i`.
"""),
    answer('''
def softmax_cross_entropy(o, y):
    """Per-example cross-entropy from logits o (batch, classes) and labels y (batch,)."""
    raise NotImplementedError  # your code here
''', '''
def softmax_cross_entropy(o, y):
    """Per-example cross-entropy from logits o (batch, classes) and labels y (batch,)."""
    shifted = o - o.max(axis=1, keepdims=True)  # (batch, classes), every entry <= 0
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return -npx.pick(log_probs, y, axis=1)  # (batch,)
'''),
    same('code', 'check_cross_entropy(softmax_cross_entropy);'),
    same('markdown', r"""
## 3. Accuracy

The model predicts the class with the largest score, $\hat y_i = \arg\max_j o_{ij}$: the same
class whether a row holds logits or probabilities, since softmax keeps the order. Write
`accuracy(y_hat, y)` returning the **number** of correct predictions in the batch, as a Python
float (the chapter adds these counts up over an epoch and divides once, at the end). Mind two
details: the classes are along axis 1, and MXNet's `==` wants both sides of one dtype, while
`argmax` returns int64 and labels come as int32 (or float32).
"""),
    answer('''
def accuracy(y_hat, y):
    """Number of rows of y_hat (batch, classes) whose largest entry is at the label's place."""
    raise NotImplementedError  # your code here
''', '''
def accuracy(y_hat, y):
    """Number of rows of y_hat (batch, classes) whose largest entry is at the label's place."""
    predictions = y_hat.argmax(axis=1).astype(y.dtype)  # (batch,): one class per row
    return float((predictions == y).sum())
'''),
    same('code', 'check_accuracy(accuracy);'),
    same('markdown', r"""
## 4. The SGD step

The training loop calls `l.backward()` on the vector of per-example losses, and MXNet then
differentiates their **sum**: `param.grad` holds $\sum_{i \in \mathcal B} \nabla \ell_i$ over
the minibatch $\mathcal B$. A step of minibatch SGD with learning rate $\eta$ follows the
average instead:

$$\mathbf w \leftarrow \mathbf w - \frac{\eta}{|\mathcal B|}
\sum_{i \in \mathcal B} \nabla_{\mathbf w} \ell_i.$$

Write `sgd(params, lr, batch_size)` updating every array of `params` **in place**
(`param[:] = ...` or `param -= ...`): the model holds these very arrays, so a new array bound
to a name would never reach it.
"""),
    answer('''
def sgd(params, lr, batch_size):
    """One minibatch SGD step on every array of params, in place."""
    raise NotImplementedError  # your code here
''', '''
def sgd(params, lr, batch_size):
    """One minibatch SGD step on every array of params, in place."""
    for param in params:
        param[:] = param - lr * param.grad / batch_size  # grad is summed over the batch
'''),
    same('code', 'check_sgd(sgd);'),
    same('markdown', r"""
## 5. One epoch of training

Now the loop. For every minibatch `(X, y)` of `train_iter`: compute the predictions
`y_hat = net(X)` and the per-example losses `l = loss(y_hat, y)` inside
`with autograd.record():` (only recorded operations can be differentiated), call
`l.backward()`, then `updater.step(X.shape[0])`, which divides by the size of this batch: the
last one may be smaller. Return the mean loss per example and the fraction of correct
predictions over the epoch (your `accuracy` helps).

The checker runs your loop on a tiny data set twice, with the scratch model and `scratch.SGD`
and with Gluon's `Dense` and `Trainer`, and compares the parameters with those after one epoch
of the chapter's `training.train_epoch` from the same start.
"""),
    answer('''
def train_epoch(net, train_iter, loss, updater):
    """One pass over train_iter; returns (mean loss per example, accuracy)."""
    raise NotImplementedError  # your code here
''', '''
def train_epoch(net, train_iter, loss, updater):
    """One pass over train_iter; returns (mean loss per example, accuracy)."""
    loss_sum, correct, total = 0.0, 0.0, 0
    for X, y in train_iter:
        with autograd.record():
            y_hat = net(X)  # (batch, classes) logits
            l = loss(y_hat, y)  # (batch,): one loss per example
        l.backward()  # the gradients of l.sum()
        updater.step(X.shape[0])  # divides by this batch's size
        loss_sum += float(l.sum())
        correct += accuracy(y_hat, y)
        total += X.shape[0]
    return loss_sum / total, correct / total
'''),
    same('code', 'check_train_epoch(train_epoch);'),
    same('markdown', r"""
## 6. Which learning rate? Answered by experiment

Train a fresh scratch model, `scratch.SoftmaxRegressionScratch()`, for `exercises.SWEEP_EPOCHS`
epochs with each learning rate of `exercises.SWEEP_LRS`, on the first 2000 training images
(`train_iter` below), and measure each model's mean loss on the next 1000 images (`val_iter`).
Your `train_epoch` (or the chapter's `training.train_epoch`) does the training, with
`scratch.softmax_cross_entropy` and `scratch.SGD(net.parameters(), lr)`, and returns the mean
training loss of each epoch; `training.evaluate(net, val_iter, scratch.softmax_cross_entropy)`
returns the validation loss first. Then answer two questions:

* `best_lr`: which rate ends with the lowest validation loss?
* `too_large`: with which rates does the **first** epoch end worse than no training at all?
  An untrained model gives every class about the same probability, $1/10$, so its loss is
  $\log 10 \approx 2.303$: list the rates whose first epoch has a mean training loss above it.

The checker runs the same sweep itself and compares. Its models start from fixed weights of
their own, so its losses differ a little from yours; the answers do not.
"""),
    answer('''
train_iter, val_iter = exercises.sweep_iters()  # 2000 training images, the next 1000 to validate
print('rates', exercises.SWEEP_LRS, 'for', exercises.SWEEP_EPOCHS, 'epochs each')
first_losses, val_losses = {}, {}  # lr -> first epoch's training loss, last validation loss
# your code here: one fresh model per rate, trained and evaluated into the two dicts
best_lr = None  # your answer: one of exercises.SWEEP_LRS
too_large = None  # your answer: a list of the rates whose first epoch ends above log(10)
''', '''
train_iter, val_iter = exercises.sweep_iters()  # 2000 training images, the next 1000 to validate
print('rates', exercises.SWEEP_LRS, 'for', exercises.SWEEP_EPOCHS, 'epochs each')
first_losses, val_losses = {}, {}  # lr -> first epoch's training loss, last validation loss
for lr in exercises.SWEEP_LRS:
    net = scratch.SoftmaxRegressionScratch()
    updater = scratch.SGD(net.parameters(), lr)
    train_losses = [train_epoch(net, train_iter, scratch.softmax_cross_entropy, updater)[0]
                    for epoch in range(exercises.SWEEP_EPOCHS)]
    first_losses[lr] = train_losses[0]
    val_losses[lr] = training.evaluate(net, val_iter, scratch.softmax_cross_entropy)[0]
    print(f'lr {lr:>5}: first epoch {first_losses[lr]:7.3f}, validation {val_losses[lr]:7.3f}')
best_lr = min(val_losses, key=val_losses.get)
too_large = [lr for lr, loss in first_losses.items() if loss > math.log(10)]
'''),
    same('code', 'check_learning_rate_answer(best_lr, too_large);'),
    same('markdown', r"""
Why do the large rates fail? A hint: one SGD step changes the logits of an image
$\mathbf x$ by $\Delta \mathbf o = \Delta \mathbf W^\top \mathbf x$, and the gradient of one
example's loss with respect to $\mathbf W$ is $\mathbf x\, (\hat{\mathbf y} - \mathbf e_y)^\top$,
where $\mathbf e_y$ is the one-hot label. How large is $\|\mathbf x\|^2$ for these images?
"""),
    same('code', """
X, _ = next(iter(train_iter))  # (256, 1, 28, 28)
squared_norms = (X.reshape(X.shape[0], -1) ** 2).sum(axis=1)  # (256,)
print(f'mean squared norm of an image: {float(squared_norms.mean()):.0f}')
"""),
    answer(r"""
**Your explanation** (edit this cell): why does the first epoch of the rates in `too_large` end
worse than no training, and why is the smallest rate not the best either?
""", r"""
**Explanation.** For one example, a step of size $\eta$ moves its own logits by
$-\eta\, \|\mathbf x\|^2 (\hat{\mathbf y} - \mathbf e_y)$. The images have
$\|\mathbf x\|^2 \approx 160$ (above) and their pixels are all positive, so they look alike to a
linear model: the minibatch's averaged gradient moves every image's logits in much the same
way. With $\eta = 1$ a single step moves logits by tens or hundreds; softmax then puts almost
all the probability on one class, a confident mistake costs a loss the size of the logit gap
(tens, far above $\log 10$), and the next step overshoots back the other way. $\eta = 10$ is ten
times worse. At $\eta = 0.1$ the steps are small enough for the loss to fall steadily; at
$\eta = 0.03$ they are stable too, but so small that three short epochs leave the model well
behind.
""", kind='markdown'),
    same('markdown', r"""
## 7. Label smoothing

A one-hot target asks for probability 1 on the true class, which the model can only approach by
growing its logits without bound. Label smoothing mixes the one-hot target with the uniform
distribution over the $K$ classes,

$$q_j = (1 - \varepsilon)\, [j = y] + \frac{\varepsilon}{K},$$

and takes the cross-entropy against that target:
$\ell = -\sum_j q_j \log \mathrm{softmax}(\mathbf o)_j$. Some texts put
$\varepsilon / (K - 1)$ on the other classes instead; here, as in the chapter, $\varepsilon / K$
goes to every class, the true one included. With $\varepsilon = 0$ it is the plain
cross-entropy of exercise 2.

Write `label_smoothing_cross_entropy(o, y, epsilon)` returning one loss per example.
`npx.one_hot(y, K, dtype=o.dtype)` builds the one-hot rows, and the log-softmax of exercise 2
keeps the loss finite for large logits.
"""),
    answer('''
def label_smoothing_cross_entropy(o, y, epsilon):
    """Per-example cross-entropy of logits o against (1 - epsilon) one_hot(y) + epsilon / K."""
    raise NotImplementedError  # your code here
''', '''
def label_smoothing_cross_entropy(o, y, epsilon):
    """Per-example cross-entropy of logits o against (1 - epsilon) one_hot(y) + epsilon / K."""
    num_classes = o.shape[1]
    shifted = o - o.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))  # (batch, K)
    q = npx.one_hot(y, num_classes, dtype=o.dtype) * (1 - epsilon) + epsilon / num_classes
    return -(q * log_probs).sum(axis=1)  # (batch,)
'''),
    same('code', 'check_label_smoothing(label_smoothing_cross_entropy);'),
    same('markdown', r"""
## What next

Compare your answers with the chapter's own code: `scratch.softmax`, `scratch.log_softmax`,
`scratch.softmax_cross_entropy`, `training.accuracy`, `scratch.sgd` and
`training.train_epoch` (`import inspect; print(inspect.getsource(scratch.softmax))`).
"""),
]


def build(solutions):
    """The exercises notebook (``solutions=False``) or the solutions notebook, without outputs."""
    nb = nbformat.v4.new_notebook()
    nb.metadata = {'kernelspec': {'display_name': 'Python 3 (ipykernel)', 'language': 'python',
                                  'name': 'python3'},
                   'language_info': {'name': 'python'}}
    for i, (kind, blank, solution) in enumerate(CELLS):
        source = (solution if solutions else blank).strip('\n')
        cell = (nbformat.v4.new_code_cell(source) if kind == 'code'
                else nbformat.v4.new_markdown_cell(source))
        cell.id = f'cell-{i:02d}'  # fixed ids: regenerating changes nothing that did not change
        nb.cells.append(cell)
    nbformat.validate(nb)
    return nb


def main(argv=None):
    """Write both notebooks, or with ``--check`` report (exit status 1) those that differ."""
    argv = sys.argv[1:] if argv is None else argv
    stale = []
    for name, solutions in NOTEBOOKS.items():
        text = nbformat.writes(build(solutions)) + '\n'
        path = HERE / name
        if '--check' in argv:
            if not path.exists() or path.read_text(encoding='utf-8') != text:
                stale.append(name)
        else:
            path.write_text(text, encoding='utf-8')
            print(f'wrote {path}')
    for name in stale:
        print(f'{HERE / name} differs from {__file__}: run python {__file__}', file=sys.stderr)
    return 1 if stale else 0


if __name__ == '__main__':
    raise SystemExit(main())
