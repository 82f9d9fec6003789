"""The figures: each one's data checked against an independent computation."""
import math

import mxnet as mx
import numpy as onp
import plotly.graph_objects as go
import plotly.io as pio
import pytest
from mxnet import autograd, gluon, np, npx

from gluon_softmax import plots, scratch
from gluon_softmax.data import TEXT_LABELS

npx.set_np()


def history(num_epochs, offset=0.0):
    return [{'epoch': e, 'train_loss': 1.0 / e + offset, 'train_acc': 0.5 + 0.04 * e,
             'test_loss': 1.1 / e + offset, 'test_acc': 0.45 + 0.04 * e, 'seconds': 0.1}
            for e in range(1, num_epochs + 1)]


@pytest.fixture
def rng():
    return onp.random.default_rng(0)


def annotation_texts(fig):
    return [a.text for a in fig.layout.annotations]


# ----------------------------------------------------------------------------- curves

def test_curves_of_one_run_keep_the_cli_trace_names():
    fig = plots.curves_figure(history(4), title='a run')
    assert isinstance(fig, go.Figure) and fig.layout.title.text == 'a run'
    assert [t.name for t in fig.data] == ['train loss', 'test loss', 'train acc', 'test acc']
    assert all(isinstance(t, go.Scatter) and list(t.x) == [1, 2, 3, 4] for t in fig.data)
    assert list(fig.data[0].y) == [e['train_loss'] for e in history(4)]
    assert list(fig.data[1].y) == [e['test_loss'] for e in history(4)]
    assert list(fig.data[3].y) == [e['test_acc'] for e in history(4)]
    # losses on the left panel, accuracies on the right
    assert [t.xaxis for t in fig.data] == ['x', 'x', 'x2', 'x2']


def test_curves_of_long_runs_are_lines_so_the_dashes_show():
    # 12 series of 50 epochs (the notebook's section 8): markers would hide the dashes
    long = plots.curves_figure({'book': history(50), 'tuned': history(50, offset=0.1)})
    assert {t.mode for t in long.data if t.meta} == {'lines'}
    assert long.layout.xaxis.dtick is None
    short = plots.curves_figure({'book': history(20), 'tuned': history(20, offset=0.1)})
    assert {t.mode for t in short.data if t.meta} == {'lines+markers'}
    assert short.layout.xaxis.dtick == 1


def test_curves_without_test_loss_still_draw_older_histories():
    old = [{k: v for k, v in e.items() if k != 'test_loss'} for e in history(2)]
    assert [t.name for t in plots.curves_figure(old).data] == ['train loss', 'train acc',
                                                                'test acc']


def test_curves_overlay_runs_one_colour_per_run_one_dash_per_split():
    runs = {'scratch': history(3), 'concise': history(3, offset=0.1)}
    fig = plots.curves_figure(runs, title='both')
    drawn = [t for t in fig.data if t.meta]
    keys = [t for t in fig.data if not t.meta]
    assert len(drawn) == 8 and not any(t.showlegend for t in drawn)
    # the legend: one entry per run, one per split's dash (not 8 entries)
    assert [t.name for t in keys] == ['scratch', 'concise', 'train (dash)', 'test (dash)']
    assert [t.line.color for t in keys[:2]] == [drawn[0].line.color, drawn[4].line.color]
    # a run exactly on top of another still shows: the first wider and paler, other markers
    assert drawn[0].line.width > drawn[4].line.width and drawn[0].opacity < drawn[4].opacity
    assert drawn[0].marker.symbol != drawn[4].marker.symbol
    fig.data = drawn
    assert [t.name for t in fig.data[:4]] == ['scratch train loss', 'scratch test loss',
                                              'scratch train acc', 'scratch test acc']
    scratch_traces, concise_traces = fig.data[:4], fig.data[4:]
    assert len({t.line.color for t in scratch_traces}) == 1
    assert scratch_traces[0].line.color != concise_traces[0].line.color
    assert [t.line.dash for t in scratch_traces] == [t.line.dash for t in concise_traces]
    # train and test differ in dash; a split's loss and accuracy share theirs
    dashes = [t.line.dash for t in scratch_traces]
    assert dashes[0] == dashes[2] != dashes[1] == dashes[3]
    assert list(concise_traces[0].y) == pytest.approx([e['train_loss'] + 0.1
                                                       for e in history(3)])


class FakeHandle:
    def __init__(self):
        self.updates = []

    def update(self, obj, **kwargs):
        self.updates.append((obj, kwargs))


def test_live_curves_displays_once_then_updates_the_same_output(monkeypatch):
    # the renderer Jupyter picks by default in a kernel (outside one the default differs)
    monkeypatch.setattr(pio.renderers, 'default', 'plotly_mimetype')
    calls, handle = [], FakeHandle()

    def display(obj, **kwargs):
        calls.append((obj, kwargs))
        return handle

    live = plots.LiveCurves(num_epochs=5, title='live', display=display)
    for entry in history(3):
        live(entry)
    assert len(calls) == 1 and calls[0][1]['display_id'] is True and calls[0][1]['raw']
    assert len(handle.updates) == 2 and handle.updates[-1][1] == {'raw': True}
    assert live.history == history(3)
    last = handle.updates[-1][0]['application/vnd.plotly.v1+json']
    assert last['data'][0]['x'] == [1, 2, 3]
    assert last['layout']['xaxis']['range'] == [0.5, 5.5]  # the axis does not grow per epoch
    assert 'LiveCurves' in repr(live)


def test_live_curves_outside_ipython_only_records():
    live = plots.LiveCurves()
    live(history(1)[0])
    assert live.history == history(1) and live.handle is None


# ----------------------------------------------------------------------------- images

@pytest.mark.parametrize('layout', ['nchw', 'nhwc', 'nhw', 'flat', 'mxnet'])
def test_images_figure_one_upright_heatmap_per_image(rng, layout):
    images = rng.random((7, 28, 28)).astype(onp.float32)
    X = {'nchw': images[:, None], 'nhwc': images[..., None], 'nhw': images,
         'flat': images.reshape(7, 784), 'mxnet': np.array(images[:, None])}[layout]
    titles = [TEXT_LABELS[i] for i in range(7)]
    fig = plots.images_figure(X, titles, num_cols=3)
    assert len(fig.data) == 7 and all(isinstance(t, go.Heatmap) for t in fig.data)
    for trace, image in zip(fig.data, images):
        assert onp.asarray(trace.z).shape == (28, 28)
        assert onp.allclose(trace.z, image)
    assert annotation_texts(fig) == titles
    assert fig.layout.yaxis.autorange == 'reversed'  # row 0 at the top
    # 7 images in 3 columns: 3 rows; image 4 (index 3) starts the second row
    assert fig.data[3].xaxis == 'x4' and fig.layout.xaxis4.domain == fig.layout.xaxis.domain


def test_images_figure_rejects_mismatched_titles_and_colour_images(rng):
    with pytest.raises(ValueError, match='2 titles for 3 images'):
        plots.images_figure(rng.random((3, 28, 28)), ['a', 'b'])
    with pytest.raises(ValueError, match='grayscale'):
        plots.images_figure(rng.random((3, 3, 28, 28)))


def test_predictions_figure_titles_true_and_predicted_and_marks_the_wrong_ones(rng):
    X = rng.random((6, 1, 28, 28)).astype(onp.float32)
    y = onp.array([0, 1, 2, 3, 4, 5])
    y_hat = np.array([0, 7, 2, 3, 9, 5])  # mxnet predictions are accepted too
    fig = plots.predictions_figure(X, y, y_hat, TEXT_LABELS, num_cols=3)
    assert len(fig.data) == 6
    assert annotation_texts(fig) == ['t-shirt / t-shirt', 'trouser / sneaker',
                                     'pullover / pullover', 'dress / dress', 'coat / ankle boot',
                                     'sandal / sandal']
    wrong = [a.font.color == plots.WRONG for a in fig.layout.annotations]
    assert wrong == [False, True, False, False, True, False]
    assert [t.meta['correct'] for t in fig.data] == [True, False, True, True, False, True]
    assert fig.layout.xaxis2.linecolor == plots.WRONG and fig.layout.xaxis.linecolor is None


def test_predictions_figure_without_names_uses_class_numbers(rng):
    fig = plots.predictions_figure(rng.random((2, 28, 28)), [3, 4], [3, 3])
    assert annotation_texts(fig) == ['3 / 3', '4 / 3']
    with pytest.raises(ValueError, match='as many of each'):
        plots.predictions_figure(rng.random((2, 28, 28)), [3, 4], [3])


# ----------------------------------------------------------------------------- confusion

def reference_confusion(y_true, y_pred, k):
    cm = onp.zeros((k, k), dtype=onp.int64)
    for t, p in zip(y_true, y_pred):
        cm[t, p] += 1
    return cm


def test_confusion_matrix_counts_pairs(rng):
    y_true = rng.integers(0, 10, 500)
    y_pred = onp.where(rng.random(500) < 0.7, y_true, rng.integers(0, 10, 500))
    cm = plots.confusion_matrix(y_true, np.array(y_pred), 10)
    assert cm.shape == (10, 10) and cm.sum() == 500
    assert (cm == reference_confusion(y_true, y_pred, 10)).all()
    assert onp.trace(cm) == (y_true == y_pred).sum()


def test_confusion_matrix_rejects_bad_input():
    with pytest.raises(ValueError, match='3 labels but 2 predictions'):
        plots.confusion_matrix([0, 1, 2], [0, 1], 3)
    with pytest.raises(ValueError, match='prediction outside 0..2'):
        plots.confusion_matrix([0, 1], [0, 3], 3)


def test_confusion_figure_is_the_matrix_with_names_rows_true(rng):
    y_true = rng.integers(0, 10, 300)
    y_pred = rng.integers(0, 10, 300)
    fig = plots.confusion_figure(y_true, y_pred, TEXT_LABELS)
    assert len(fig.data) == 1 and isinstance(fig.data[0], go.Heatmap)
    heatmap = fig.data[0]
    assert (onp.asarray(heatmap.z) == reference_confusion(y_true, y_pred, 10)).all()
    assert list(heatmap.x) == list(TEXT_LABELS) and list(heatmap.y) == list(TEXT_LABELS)
    rows = reference_confusion(y_true, y_pred, 10)
    assert onp.allclose(heatmap.customdata, rows / rows.sum(axis=1, keepdims=True))
    assert fig.layout.yaxis.autorange == 'reversed'
    assert fig.layout.yaxis.title.text == 'true class'


def test_per_class_accuracy_figure(rng):
    y_true = onp.repeat(onp.arange(10), 20)
    y_pred = y_true.copy()
    y_pred[:5] = 1  # 5 of the 20 t-shirts wrong: 0.75
    y_pred[40:60] = 0  # all pullovers wrong: 0
    fig = plots.per_class_accuracy_figure(y_true, y_pred, TEXT_LABELS)
    bar = fig.data[0]
    assert isinstance(bar, go.Bar) and list(bar.x) == list(TEXT_LABELS)
    expected = [(y_pred[y_true == k] == k).mean() for k in range(10)]
    assert list(bar.y) == pytest.approx(expected)
    assert bar.y[0] == 0.75 and bar.y[2] == 0
    overall = (y_true == y_pred).mean()
    assert fig.layout.shapes[0].y0 == pytest.approx(overall)


def test_per_class_colours_follow_the_printed_numbers():
    # 0.8266 prints as 0.827 like the overall 0.8268: both must be drawn the same (found: coat
    # "0.83" in red beside t-shirt "0.83" in blue when the colour used the unrounded values)
    y_true = onp.repeat(onp.arange(2), 5000)
    y_pred = y_true.copy()
    y_pred[:867] = 1  # class 0: 4133 / 5000 = 0.8266
    y_pred[5000:5865] = 0  # class 1: 4135 / 5000 = 0.8270; overall 0.8268
    fig = plots.per_class_accuracy_figure(y_true, y_pred, ['a', 'b'])
    bar = fig.data[0]
    assert list(bar.text) == ['0.827', '0.827'] and f'{(y_true == y_pred).mean():.3f}' == '0.827'
    assert bar.marker.color[0] == bar.marker.color[1] != plots.WRONG
    y_pred[867] = 1  # 0.8264: prints below the overall (0.8267), so it is red
    bar = plots.per_class_accuracy_figure(y_true, y_pred, ['a', 'b']).data[0]
    assert bar.text[0] == '0.826' and bar.marker.color[0] == plots.WRONG
    # the labels sit at the bars' feet, away from the dashed overall line
    assert bar.textposition == 'inside' and bar.insidetextanchor == 'start'


def test_most_confused_pairs_are_the_largest_off_diagonal_cells():
    cm = onp.array([[50, 7, 1], [2, 40, 9], [3, 0, 60]])
    assert plots.most_confused_pairs(cm, ['a', 'b', 'c'], k=3) == [
        ('b', 'c', 9), ('a', 'b', 7), ('c', 'a', 3)]
    assert plots.most_confused_pairs(onp.eye(3, dtype=int) * 5) == []  # no mistakes, no pairs


# ----------------------------------------------------------------------------- weights

def test_weights_figure_draws_each_column_as_a_template(rng):
    W = rng.normal(size=(784, 10)).astype(onp.float32)
    fig = plots.weights_figure(np.array(W), TEXT_LABELS)
    assert len(fig.data) == 10 and annotation_texts(fig) == list(TEXT_LABELS)
    bound = onp.abs(W).max()
    for k, trace in enumerate(fig.data):
        assert onp.allclose(trace.z, W[:, k].reshape(28, 28))
        assert trace.zmin == pytest.approx(-bound) and trace.zmax == pytest.approx(bound)
    assert [t.showscale for t in fig.data].count(True) == 1  # one shared colour bar


def test_weights_figure_takes_the_dense_weight_transposed():
    from gluon_softmax import concise
    net = concise.build_net(hybridize=False)
    weight = net[0].weight.data()  # (10, 784)
    fig = plots.weights_figure(weight.T)
    assert onp.allclose(fig.data[3].z, weight.asnumpy()[3].reshape(28, 28))
    with pytest.raises(ValueError, match=r'weight.data\(\).T'):
        plots.weights_figure(weight)


# ----------------------------------------------------------------------------- losses

def gluon_loss_and_grad(loss, r):
    """Gluon's loss of predictions r against 0 targets, and its gradient in the predictions."""
    # L1Loss and HuberLoss use legacy operators that refuse mxnet.np arrays: run them on mx.nd
    with mx.util.np_array(False):
        pred = mx.nd.array(r).reshape((-1, 1))
        pred.attach_grad()
        with autograd.record():
            value = loss(pred, mx.nd.zeros((len(r), 1)))
        value.backward()
        return value.asnumpy(), pred.grad.asnumpy().ravel()


@pytest.mark.parametrize('delta', [1.0, 0.5])
def test_loss_functions_match_gluons_losses_and_their_gradients(delta):
    fig = plots.loss_functions_figure(delta=delta, max_residual=2.0, num=41)
    assert len(fig.data) == 6
    losses = [t for t in fig.data if t.meta == 'loss']
    grads = [t for t in fig.data if t.meta == 'gradient']
    assert [t.name for t in losses] == ['L2', 'L1', f'Huber (delta={delta:g})']
    references = [gluon.loss.L2Loss(), gluon.loss.L1Loss(), gluon.loss.HuberLoss(rho=delta)]
    for loss_trace, grad_trace, reference in zip(losses, grads, references):
        value, grad = gluon_loss_and_grad(reference, loss_trace.x)
        assert onp.allclose(loss_trace.y, value, atol=1e-6)
        # away from the kink at 0, where L1's derivative is not defined
        away = onp.abs(loss_trace.x) > 1e-6
        assert onp.allclose(onp.asarray(grad_trace.y)[away], grad[away], atol=1e-6)
    assert f'delta = {delta:g}' in fig.layout.title.text


# ----------------------------------------------------------------------------- softmax

def test_naive_softmax_breaks_where_the_stable_one_does_not():
    fig = plots.softmax_stability_figure(max_logit=120.0, num=241)
    traces = {t.meta: t for t in fig.data}
    t = onp.asarray(traces['naive softmax'].x)
    naive_p, stable_p = (onp.asarray(traces[k].y, dtype=float) for k in
                         ('naive softmax', 'stable softmax'))
    naive_ce, stable_ce = (onp.asarray(traces[k].y, dtype=float) for k in
                           ('naive cross-entropy', 'stable cross-entropy'))
    overflow = t > math.log(onp.finfo(onp.float32).max)
    assert overflow.any() and (~overflow).any()
    assert onp.isnan(naive_p[overflow]).all() and onp.isfinite(naive_p[~overflow]).all()
    assert onp.isinf(naive_ce[overflow]).all() and onp.isfinite(naive_ce[~overflow]).all()
    assert onp.isfinite(stable_p).all() and onp.isfinite(stable_ce).all()
    # below the overflow both agree; the stable ones equal the package's and MXNet's
    assert onp.allclose(naive_p[~overflow], stable_p[~overflow], atol=1e-6)
    o = np.array(onp.stack([t, t / 2, onp.zeros_like(t)], axis=1).astype(onp.float32))
    assert onp.allclose(stable_p, npx.softmax(o)[:, 0].asnumpy(), atol=1e-6)
    expected_ce = scratch.softmax_cross_entropy(o, np.full(len(t), 2, dtype='int32'))
    assert onp.allclose(stable_ce, expected_ce.asnumpy(), rtol=1e-5, atol=1e-5)
    assert fig.layout.shapes, 'the region where the naive version fails is shaded'


def test_to_numpy_accepts_mxnet_numpy_and_lists():
    assert (plots.to_numpy(np.array([1, 2], ctx=mx.cpu())) == [1, 2]).all()
    assert (plots.to_numpy([1, 2]) == onp.array([1, 2])).all()
