"""Figures as pure functions: data in, ``plotly.graph_objects.Figure`` out (nothing is shown).

Their words follow the package's language (``gluon_softmax.language``): in Chinese every title,
axis, legend entry and class name found in :data:`ZH` is translated.

Arrays may be NumPy arrays or ``mxnet.np`` arrays (anything with ``.asnumpy()``);
class labels are optional sequences of names, by default the class numbers. The
one stateful object, :class:`LiveCurves`, redraws :func:`curves_figure` in a
notebook after each epoch.
"""
import functools
import math
import os
import re
import sys

import numpy as onp
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from . import language

CURVES = (('train_loss', 'train loss'), ('val_loss', 'val loss'), ('test_loss', 'test loss'),
          ('train_acc', 'train acc'), ('val_acc', 'val acc'), ('test_acc', 'test acc'))
LOSSES = ('train_loss', 'val_loss', 'test_loss')  # drawn in the left panel, accuracies right
# several runs in one figure: the colour says which run, the dash which split
DASHES = {'train_loss': 'solid', 'train_acc': 'solid', 'val_loss': 'dashdot',
          'val_acc': 'dashdot', 'test_loss': 'dot', 'test_acc': 'dot'}
SPLIT_COLOURS = {'train': qualitative.Plotly[0], 'val': qualitative.Plotly[2],
                 'test': qualitative.Plotly[1]}
MARKERS = ('circle', 'x', 'diamond', 'square', 'triangle-up', 'cross')
LEGEND_PER_ROW = 5  # entries of a horizontal legend per row at Notebook 7's width (~900 px)
# up to this many epochs, a tick and a marker per epoch; beyond, markers (12 series of 50 points
# in section 8 of the notebook) hide the dashes that tell the splits apart, so lines only
MARKED_EPOCHS = 20
WRONG = '#d62728'  # plotly's red: the titles and frames of wrong predictions
RIGHT = '#222222'
TEMPLATE = 'plotly_white'
FLOAT32_MAX_EXP = math.log(onp.finfo(onp.float32).max)  # exp(x) overflows float32 above ~88.72
NOTEBOOK_RENDERER = 'plotly_mimetype+notebook'  # in a Jupyter kernel, see use_notebook_renderer


# ----------------------------------------------------------------------------- language

# The figures' words in Chinese (d2l-zh's terms), English -> Chinese. An entry with {} is a
# pattern: each {} matches any text, which is translated in turn ('shirt / t-shirt' -> '衬衫 /
# T恤'). Titles the notebook passes in are here too, so that its code stays the same in both
# languages; anything without an entry is drawn as it is.
ZH = {
    # curves_figure and LiveCurves
    'loss': '损失', 'accuracy': '精度', 'epoch': '迭代周期', 'mean cross-entropy': '平均交叉熵',
    'train loss': '训练损失', 'val loss': '验证损失', 'test loss': '测试损失',
    'train acc': '训练精度', 'val acc': '验证精度', 'test acc': '测试精度',
    'train': '训练', 'val': '验证', 'test': '测试', '{} (dash)': '{}（线型）',
    'Softmax regression on Fashion-MNIST': 'Fashion-MNIST 上的 softmax 回归',
    '{}<br>{}': '{}<br>{}',
    # images, predictions, confusion, weights
    '{} / {} ({})': '{} / {}（{}）', '{} / {}': '{} / {}',
    'Predictions (title: true / predicted; wrong ones in red)':
        '预测（标题：真实类别 / 预测类别；预测错误的标为红色）',
    'count': '数量', 'predicted class': '预测类别', 'true class': '真实类别',
    'true %{y}, predicted %{x}: %{z} (%{customdata:.1%} of %{y})<extra></extra>':
        '真实类别 %{y}，预测为 %{x}：%{z}（占 %{y} 的 %{customdata:.1%}）<extra></extra>',
    'Confusion matrix on the test set': '测试集上的混淆矩阵',
    'fraction correct': '预测正确的比例',
    'Accuracy per class on the test set': '测试集上每个类别的精度',
    '{} (overall {}, dashed; red: below it)': '{}（总体 {}，虚线；红色：低于总体）',
    '{} taken for {}': '{} 被误认为 {}', 'test images': '测试图像数',
    'Most-confused pairs of classes (test set)': '最容易混淆的类别对（测试集）',
    'weight': '权重',
    'Weights as images: one template per class (blue: evidence for it)':
        '把权重画成图像：每个类别一个模板（蓝色：支持该类别的证据）',
    # loss_functions_figure and softmax_stability_figure
    'Huber (delta={})': 'Huber（delta={}）', 'gradient d loss / d y_hat': '梯度 d loss / d y_hat',
    'residual y_hat - y': '残差 y_hat - y',
    'Regression losses: L2, L1 and Huber (delta = {}, dotted)':
        '回归损失：L2、L1 与 Huber（delta = {}，点线）',
    'softmax: probability of the largest logit': 'softmax：最大 logit 的概率',
    'cross-entropy of the smallest-logit class': 'logit 最小的类别的交叉熵',
    'naive softmax': '朴素的 softmax', 'stable softmax (subtract the max)': '稳定的 softmax（减去最大值）',
    'naive cross-entropy': '朴素的交叉熵', 'stable cross-entropy (LogSumExp)': '稳定的交叉熵（LogSumExp）',
    'naive: nan / inf': '朴素实现：nan / inf',
    't (logits t, t/2, 0), float32': 't（logits 为 t, t/2, 0），float32',
    'probability': '概率', '-log probability': '-log 概率',
    'Naive softmax overflows once exp(t) exceeds float32 (t > {}, dotted)':
        '一旦 exp(t) 超出 float32 的范围，朴素的 softmax 就会上溢（t > {}，点线）',
    # report.report_figures
    'The first {} misclassified test images of {} (title: true / predicted (its probability))':
        '前 {} 张分类错误的测试图像（共 {} 张错误）（标题：真实类别 / 预测类别（其概率））',
    'The first {} test images (title: true / predicted (its probability))':
        '前 {} 张测试图像（标题：真实类别 / 预测类别（其概率））',
    # the walk-through's titles and run names
    'The first 18 training images': '前 18 张训练图像',
    'Softmax regression from scratch': '从零开始实现 softmax 回归',
    'The from-scratch model on the first test images': '从零实现的模型在前几张测试图像上的预测',
    'Softmax regression, concise': 'softmax 回归的简洁实现',
    'scratch': '从零实现', 'concise': '简洁实现', 'From scratch vs concise': '从零实现与简洁实现',
    'lr {}': '学习率 {}', 'batch {}': '批量 {}',
    'Learning-rate sweep (concise model, batch size {})': '学习率扫描（简洁实现，批量大小 {}）',
    'Batch-size sweep (concise model, lr {})': '批量大小扫描（简洁实现，学习率 {}）',
    "The book's recipe for {} epochs, {} images held out for validation":
        '书中的配方训练 {} 个迭代周期，留出 {} 张图像作验证集',
    'The first 12 mistakes on the test set (true / predicted)':
        '测试集上的前 12 个错误（真实类别 / 预测类别）',
    'From-scratch model: the columns of W as images': '从零实现的模型：W 的各列画成图像',
    'Concise model: the rows of the Dense weight as images': '简洁实现的模型：Dense 权重的各行画成图像',
    'book recipe': '书中的配方', 'tuned recipe': '调优后的配方',
    'Book vs tuned recipe, chosen on the validation split': '书中的配方与调优后的配方（在验证集上比较）',
    'All 60000 training images, {} epochs': '全部 60000 张训练图像，{} 个迭代周期',
    'plateau': '平台期起点', 'best val': '最佳验证精度',
    'Average cost per test image, by true class': '每张测试图像的平均代价（按真实类别）',
    'average cost': '平均代价', 'arg-max': '取概率最大者（arg-max）',
    'least expected cost': '期望代价最小',
}
for _key, _label in CURVES:  # a run's curve: 'lr 0.1 train loss' -> '学习率 0.1 训练损失'
    ZH[f'{{}} {_label}'] = f'{{}} {ZH[_label]}'


@functools.lru_cache(maxsize=None)
def _patterns():
    """``[(regex, Chinese template)]`` for the entries of :data:`ZH` with ``{}``, the class
    names added (``data.TEXT_LABELS_ZH``; data imports MXNet, so only once Chinese is asked)."""
    from .data import TEXT_LABELS, TEXT_LABELS_ZH  # pylint: disable=import-outside-toplevel
    exact = {**dict(zip(TEXT_LABELS, TEXT_LABELS_ZH)), **ZH}
    # the most literal text first: 'The first {} test images (title: true / predicted (its
    # probability))' before '{} / {} ({})', which would match it too
    keys = sorted((key for key in ZH if '{}' in key), key=lambda key: -len(key.replace('{}', '')))
    return exact, [(re.compile('(.+?)'.join(map(re.escape, key.split('{}'))) + '$', re.S), ZH[key])
                   for key in keys]


def translate(text, lang=None):
    """``text`` in ``lang`` (default: the package's language, see ``gluon_softmax.language``);
    unchanged in English and where the table has no entry."""
    if (lang or language.current()) == 'en' or not isinstance(text, str) or not text:
        return text
    exact, patterns = _patterns()
    if text in exact:
        return exact[text]
    for regex, zh in patterns:
        match = regex.match(text)
        if match:
            return zh.format(*(translate(part, 'zh') for part in match.groups()))
    return text


def localized(fig):
    """``fig`` with its words (titles, axes, legend, annotations, category names) in the
    package's language; in English the very same figure, untouched."""
    if language.current() == 'en':
        return fig
    fig.update_layout(title_text=translate(fig.layout.title.text))
    fig.for_each_xaxis(lambda axis: axis.update(title_text=translate(axis.title.text)))
    fig.for_each_yaxis(lambda axis: axis.update(title_text=translate(axis.title.text)))
    fig.for_each_annotation(lambda note: note.update(text=translate(note.text)))
    for trace in fig.data:
        trace.name = translate(trace.name)
        if 'hovertemplate' in trace:
            trace.hovertemplate = translate(trace.hovertemplate)
        if 'colorbar' in trace and trace.colorbar.title.text:
            trace.colorbar.title.text = translate(trace.colorbar.title.text)
        for axis in ('x', 'y'):  # class names on a bar chart's or a heatmap's axis
            values = getattr(trace, axis, None)
            if values is not None and len(values) and all(isinstance(v, str) for v in values):
                setattr(trace, axis, [translate(v) for v in values])
    return fig


def in_language(function):
    """Decorate a figure function so that its figure is :func:`localized`."""
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        return localized(function(*args, **kwargs))
    return wrapper


def use_notebook_renderer():
    """In a Jupyter kernel, show figures both as Plotly JSON and as offline HTML."""
    # Plotly picks its renderer when plotly.io is first imported: PLOTLY_RENDERER if set, a
    # host's own where it detects one (colab, vscode, kaggle, ...), and in a plain Jupyter
    # kernel 'plotly_mimetype': JSON that JupyterLab and Notebook 7 draw but that nbconvert's
    # HTML export drops. Only that last choice is changed, to JSON for live Jupyter plus the
    # 'notebook' HTML (plotly.js embedded once per kernel, no CDN, unlike
    # 'notebook_connected') that exported HTML keeps and that opens offline. Outside a kernel
    # (the CLI, tests) nothing changes; a PLOTLY_RENDERER, a host's renderer, or a default
    # set after this import stays the user's.
    ipython = sys.modules.get('IPython')  # a kernel has imported it; no import here
    shell = ipython.get_ipython() if ipython is not None else None
    if shell is None or not type(shell).__module__.startswith('ipykernel.') \
            or os.environ.get('PLOTLY_RENDERER'):
        return
    import plotly.io as pio
    if pio.renderers.default == 'plotly_mimetype':
        pio.renderers.default = NOTEBOOK_RENDERER


use_notebook_renderer()


def to_numpy(a):
    """A NumPy array from a NumPy array, an ``mxnet`` array or a sequence."""
    return a.asnumpy() if hasattr(a, 'asnumpy') else onp.asarray(a)


def _runs(history):
    """Accept one history (list of per-epoch dicts) or ``{run name: history}``."""
    if isinstance(history, dict):
        return dict(history)
    return {'': list(history)}


@in_language
def curves_figure(history, title='Softmax regression on Fashion-MNIST', subtitle=None, note=None):
    """Loss (left) and accuracy (right) against epoch, for training and test (markers up to 20).

    Validation loss and accuracy are drawn too when the entries have them.

    ``history`` is what :func:`gluon_softmax.training.train` returns, or a dict
    mapping run names to such histories to overlay several runs (then each run
    has one colour and each split one dash style; one run: one colour per
    split, in both panels). ``subtitle`` (the settings, say) goes under the
    title, ``note`` (why a run ended early) under it in red. The legend sits
    under both panels, which it serves alike.
    """
    runs = _runs(history)
    several = len(runs) > 1
    marked = max((len(entries) for entries in runs.values()), default=0) <= MARKED_EPOCHS
    mode = 'lines+markers' if marked else 'lines'
    fig = make_subplots(rows=1, cols=2, subplot_titles=('loss', 'accuracy'))
    for i, (run, entries) in enumerate(runs.items()):
        epochs = [e['epoch'] for e in entries]
        for key, label in CURVES:
            if not entries or key not in entries[0]:
                continue
            name = f'{run} {label}'.strip()
            style = (_run_style(i, key, run) if several else
                     dict(line=dict(color=SPLIT_COLOURS[key.split('_')[0]])))
            fig.add_trace(go.Scatter(x=epochs, y=[e[key] for e in entries], name=name,
                                     mode=mode, meta=key, **style),
                          row=1, col=1 if key in LOSSES else 2)
    if several:
        _legend_keys(fig, runs, [key for key, _ in CURVES if any(
            entries and key in entries[0] for entries in runs.values())], mode)
    fig.update_xaxes(title_text='epoch')
    if marked:
        fig.update_xaxes(dtick=1)  # whole epochs only
    fig.update_yaxes(title_text='mean cross-entropy', row=1, col=1)
    fig.update_yaxes(title_text='accuracy', row=1, col=2)
    text = title + (f'<br><sup>{subtitle}</sup>' if subtitle else '') \
        + (f'<br><sup><span style="color:{WRONG}">{note}</span></sup>' if note else '')
    # the legend under both panels, with room made for its rows so that it never covers them
    rows = -(-sum(trace.showlegend is not False for trace in fig.data) // LEGEND_PER_ROW)
    fig.update_layout(title=dict(text=text), template=TEMPLATE,
                      height=420 + 20 * bool(subtitle) + 20 * bool(note) + 22 * rows,
                      margin=dict(t=90 + 20 * bool(subtitle) + 20 * bool(note), b=70 + 22 * rows),
                      legend=dict(orientation='h', x=0.5, xanchor='center', y=-0.16,
                                  yanchor='top'))
    return fig


def _run_style(i, key, run):
    """Run ``i`` of several: its colour and marker; the split's dash. Earlier runs are drawn
    wider and paler, so a run that lies exactly on another still shows as two."""
    return dict(line=dict(color=qualitative.Plotly[i % len(qualitative.Plotly)],
                          dash=DASHES[key], width=max(4.5 - 1.5 * i, 1.5)),
                marker=dict(symbol=MARKERS[i % len(MARKERS)], size=max(10 - 2 * i, 6)),
                opacity=0.55 if i == 0 else 1.0, legendgroup=run, showlegend=False)


def _legend_keys(fig, runs, keys, mode='lines+markers'):
    """The legend of several runs: one entry per run (its colour, and its marker where the
    curves have markers; a click hides the run) and one grey line per split for what each dash
    means, instead of runs x splits."""
    for i, run in enumerate(runs):
        style = _run_style(i, 'train_loss', run)
        fig.add_trace(go.Scatter(x=[None], y=[None], mode=mode, name=run,
                                 **{**style, 'showlegend': True}), row=1, col=1)
    for split in dict.fromkeys(key.split('_')[0] for key in keys):
        fig.add_trace(go.Scatter(x=[None], y=[None], mode='lines', name=f'{split} (dash)',
                                 line=dict(color='grey', dash=DASHES[f'{split}_loss'])),
                      row=1, col=1)


class LiveCurves:
    """A ``callback`` for :func:`gluon_softmax.training.train` that redraws the curves.

    The first epoch displays :func:`curves_figure` with ``display(...,
    display_id=True)``; later epochs replace that output through the returned
    handle's ``update``, so a notebook cell shows one figure that grows. The
    entries seen so far are kept in ``history``. Outside IPython (and without
    a ``display``) nothing is shown.

    Parameters
    ----------
    num_epochs : fixes the epoch axis to ``1..num_epochs`` so it does not rescale as it grows.
    title : the figure's title.
    display : a function like ``IPython.display.display`` (default: that one).
    """

    def __init__(self, num_epochs=None, title='Softmax regression on Fashion-MNIST',
                 display=None):
        self.num_epochs = num_epochs
        self.title = title
        self.display = display
        self.history = []
        self.handle = None

    def figure(self):
        """The figure of the epochs seen so far."""
        fig = curves_figure(self.history, title=self.title)
        if self.num_epochs:
            fig.update_xaxes(range=[0.5, self.num_epochs + 0.5])
        return fig

    def _display_function(self):
        if self.display is not None:
            return self.display
        from IPython import get_ipython
        if get_ipython() is None:
            return None
        from IPython.display import display
        return display

    def __call__(self, entry):
        self.history.append(dict(entry))
        display = self._display_function()
        if display is None:
            return
        # Figure._ipython_display_ would ignore display_id (each epoch a new output), so the
        # figure goes out as the raw MIME bundle of the notebook's default plotly renderer.
        # Not Figure._repr_mimebundle_: it re-activates the 'notebook' renderer on every call,
        # which displays all of plotly.js (~5 MB) again each epoch; this activates it once.
        import plotly.io as pio
        bundle = pio.renderers._build_mime_bundle(self.figure().to_dict())
        if self.handle is None:
            self.handle = display(bundle, raw=True, display_id=True)
        else:
            self.handle.update(bundle, raw=True)

    def __repr__(self):
        return f'LiveCurves(num_epochs={self.num_epochs}, epochs_seen={len(self.history)})'


def as_images(X):
    """A batch of images as a float array ``(n, height, width)``.

    Accepts ``(n, 1, h, w)`` (the loaders' layout), ``(n, h, w, 1)`` (the raw
    data set's), ``(n, h, w)`` and flat ``(n, h*w)`` for square images.
    """
    X = to_numpy(X).astype(onp.float32)
    if X.ndim == 4 and X.shape[1] == 1:
        return X[:, 0]
    if X.ndim == 4 and X.shape[3] == 1:
        return X[..., 0]
    if X.ndim == 3:
        return X
    if X.ndim == 2:
        side = math.isqrt(X.shape[1])
        if side * side == X.shape[1]:
            return X.reshape(-1, side, side)
    raise ValueError(f'expected grayscale images (n, 1, h, w), (n, h, w, 1), (n, h, w) or '
                     f'(n, side*side), got shape {X.shape}')


def _grid(n, num_cols):
    """``(rows, cols)`` of a grid that holds ``n`` panels, at most ``num_cols`` wide."""
    cols = max(1, min(num_cols, n))
    return max(1, -(-n // cols)), cols


def _image_grid(images, titles, num_cols, colorscale, zmin, zmax, zmid=None, title=None,
                cell=150, hover='row %{y}, column %{x}: %{z:.3f}', showscale=False,
                colorbar_title=None):
    """Heatmaps of ``images`` (n, h, w) in a grid, upright, square pixels, titled: the figure
    as a dict, for ``go.Figure`` to check once. Panel ``i`` (row by row from the top left) is
    on axes ``x{i+1}``/``y{i+1}``, where ``make_subplots`` would put it; building it that way,
    with an update per panel, took ten times as long (0.3 s for 18 images, in every report).
    """
    n = len(images)
    rows, cols = _grid(n, num_cols)
    h_gap, v_gap = 0.02, (0.3 / rows if rows > 1 else 0)
    width, height = (1 - h_gap * (cols - 1)) / cols, (1 - v_gap * (rows - 1)) / rows
    # images: row 0 at the top, one pixel as wide as it is high, no ticks
    hidden = dict(showticklabels=False, showgrid=False, zeroline=False, constrain='domain')
    data, annotations = [], []
    layout = {'annotations': annotations, 'title': title, 'template': TEMPLATE,
              'height': rows * cell + 100, 'margin': dict(l=20, r=20, t=90 if title else 40, b=20)}
    for i, image in enumerate(images):
        row, col = divmod(i, cols)
        left, bottom = col * (width + h_gap), (rows - 1 - row) * (height + v_gap)
        # (a sum can pass 1 by a rounding error, which Plotly refuses)
        right, top = min(left + width, 1.0), min(bottom + height, 1.0)
        x, y = ('x', 'y') if i == 0 else (f'x{i + 1}', f'y{i + 1}')
        layout['xaxis' + x[1:]] = dict(domain=[left, right], anchor=y, **hidden)
        layout['yaxis' + y[1:]] = dict(domain=[bottom, top], anchor=x, autorange='reversed',
                                       scaleanchor=x, **hidden)
        name = str(titles[i]) if titles is not None else str(i)
        if titles is not None:
            annotations.append(dict(text=name or ' ', x=(left + right) / 2, y=top, xref='paper',
                                    yref='paper', xanchor='center', yanchor='bottom',
                                    showarrow=False, font=dict(size=12)))
        data.append(dict(type='heatmap', z=image, xaxis=x, yaxis=y, colorscale=colorscale,
                         zmin=zmin, zmax=zmax, zmid=zmid, showscale=showscale and i == 0,
                         hovertemplate=f'{hover}<extra>{name or " "}</extra>',
                         colorbar=dict(title=colorbar_title) if colorbar_title else None))
    return {'data': data, 'layout': layout}


@in_language
def images_figure(X, titles=None, num_cols=9, title=None):
    """A grid of grayscale images (a batch ``X``), each titled by ``titles`` (e.g. text labels)."""
    images = as_images(X)
    if titles is not None and len(titles) != len(images):
        raise ValueError(f'{len(titles)} titles for {len(images)} images')
    vmax = max(1.0, float(images.max())) if images.size else 1.0  # [0, 1] floats or 0..255 bytes
    return go.Figure(_image_grid(images, titles, num_cols, 'gray', 0.0, vmax, title=title))


def _names(labels, indices):
    """Class names for class numbers (the numbers themselves when ``labels`` is None)."""
    return [str(labels[int(i)]) if labels is not None else str(int(i)) for i in indices]


@in_language
def predictions_figure(X, y, y_hat_labels, labels=None, num_cols=6,
                       title='Predictions (title: true / predicted; wrong ones in red)',
                       probabilities=None):
    """Images titled ``true / predicted``; wrong predictions get a red title and frame.

    ``y`` and ``y_hat_labels`` are class numbers (``y_hat.argmax(axis=1)``);
    ``labels`` maps them to names; ``probabilities`` (optional), the probability
    of each prediction, is added to its title. Each heatmap's ``meta`` records
    ``{'true': ..., 'predicted': ..., 'correct': ...}``.
    """
    images = as_images(X)
    y, y_hat_labels = to_numpy(y).astype(int).ravel(), to_numpy(y_hat_labels).astype(int).ravel()
    if not len(images) == len(y) == len(y_hat_labels):
        raise ValueError(f'{len(images)} images, {len(y)} labels and {len(y_hat_labels)} '
                         'predictions: expected as many of each')
    true, predicted = _names(labels, y), _names(labels, y_hat_labels)
    titles = [f'{t} / {p}' for t, p in zip(true, predicted)]
    if probabilities is not None:
        titles = [f'{t} ({p:.0%})' for t, p in zip(titles, to_numpy(probabilities).ravel())]
    vmax = max(1.0, float(images.max())) if images.size else 1.0
    fig = _image_grid(images, titles, num_cols, 'gray', 0.0, vmax, title=title, cell=170)
    for i, (trace, annotation) in enumerate(zip(fig['data'], fig['layout']['annotations'])):
        correct = bool(y[i] == y_hat_labels[i])
        trace['meta'] = {'true': true[i], 'predicted': predicted[i], 'correct': correct}
        annotation['font']['color'] = RIGHT if correct else WRONG
        if not correct:
            for axis in ('xaxis' + trace['xaxis'][1:], 'yaxis' + trace['yaxis'][1:]):
                fig['layout'][axis].update(showline=True, linewidth=3, linecolor=WRONG,
                                           mirror=True)
    return go.Figure(fig)


def confusion_matrix(y_true, y_pred, num_classes):
    """Counts ``C[i, j]`` of examples of true class ``i`` predicted as class ``j`` (int64)."""
    y_true = to_numpy(y_true).astype(onp.int64).ravel()
    y_pred = to_numpy(y_pred).astype(onp.int64).ravel()
    if len(y_true) != len(y_pred):
        raise ValueError(f'{len(y_true)} labels but {len(y_pred)} predictions')
    for name, values in (('label', y_true), ('prediction', y_pred)):
        if values.size and (values.min() < 0 or values.max() >= num_classes):
            raise ValueError(f'{name} outside 0..{num_classes - 1}')
    # one histogram over the num_classes**2 (true, predicted) pairs
    flat = onp.bincount(y_true * num_classes + y_pred, minlength=num_classes * num_classes)
    return flat.reshape(num_classes, num_classes)


def _class_names(labels, num_classes):
    return [str(label) for label in labels] if labels is not None else \
        [str(i) for i in range(num_classes)]


@in_language
def confusion_figure(y_true, y_pred, labels=None, num_classes=None,
                     title='Confusion matrix on the test set'):
    """Heatmap of :func:`confusion_matrix`: rows true class, columns predicted, counts written in.

    The hover text also gives each count as a fraction of its true class.
    """
    num_classes = num_classes or (len(labels) if labels is not None else
                                  int(max(to_numpy(y_true).max(), to_numpy(y_pred).max())) + 1)
    cm = confusion_matrix(y_true, y_pred, num_classes)
    names = _class_names(labels, num_classes)
    per_row = cm / onp.maximum(cm.sum(axis=1, keepdims=True), 1)
    fig = go.Figure(go.Heatmap(
        z=cm, x=names, y=names, colorscale='Blues', customdata=per_row,
        texttemplate='%{z}', colorbar=dict(title='count'),
        hovertemplate='true %{y}, predicted %{x}: %{z} (%{customdata:.1%} of %{y})<extra></extra>'))
    fig.update_xaxes(title_text='predicted class', side='bottom', tickangle=-30)
    fig.update_yaxes(title_text='true class', autorange='reversed')
    fig.update_layout(title=title, template=TEMPLATE, height=620, width=720)
    return fig


def per_class_accuracy(y_true, y_pred, num_classes):
    """Per true class, the fraction of its examples predicted correctly (NaN if it has none)."""
    cm = confusion_matrix(y_true, y_pred, num_classes)
    totals = cm.sum(axis=1)
    with onp.errstate(invalid='ignore', divide='ignore'):
        return onp.where(totals > 0, onp.diag(cm) / totals, onp.nan)


@in_language
def per_class_accuracy_figure(y_true, y_pred, labels=None, num_classes=None,
                              title='Accuracy per class on the test set'):
    """Bars of :func:`per_class_accuracy`; overall accuracy as a dashed line and in the title."""
    y_true, y_pred = to_numpy(y_true).ravel(), to_numpy(y_pred).ravel()
    num_classes = num_classes or (len(labels) if labels is not None else
                                  int(max(y_true.max(), y_pred.max())) + 1)
    accuracy = per_class_accuracy(y_true, y_pred, num_classes)
    overall = float((y_true == y_pred).mean()) if len(y_true) else float('nan')
    # the colour is decided on the printed numbers: two bars that print alike look alike
    shown = [f'{a:.3f}' for a in accuracy]
    fig = go.Figure(go.Bar(x=_class_names(labels, num_classes), y=accuracy,
                           text=shown, textposition='inside', insidetextanchor='start',
                           textfont=dict(color='white'),
                           marker_color=[WRONG if float(a) < round(overall, 3) else '#1f77b4'
                                         for a in shown],
                           hovertemplate='%{x}: %{y:.3f}<extra></extra>'))
    fig.add_hline(y=overall, line_dash='dash', line_color='gray')
    fig.update_yaxes(title_text='fraction correct', range=[0, 1.08])
    fig.update_xaxes(title_text='true class')
    fig.update_layout(title=f'{title} (overall {overall:.3f}, dashed; red: below it)',
                      template=TEMPLATE, height=420, showlegend=False)
    return fig


def most_confused_pairs(cm, labels=None, k=5):
    """The ``k`` largest off-diagonal cells of a confusion matrix: ``(true, predicted, count)``."""
    cm = to_numpy(cm)
    names = _class_names(labels, len(cm))
    off = cm.astype(onp.int64).copy()
    onp.fill_diagonal(off, -1)
    order = onp.argsort(-off, axis=None, kind='stable')[:k]
    pairs = [onp.unravel_index(i, off.shape) for i in order]
    return [(names[i], names[j], int(cm[i, j])) for i, j in pairs if off[i, j] > 0]


@in_language
def confused_pairs_figure(cm, labels=None, k=10,
                          title='Most-confused pairs of classes (test set)'):
    """The ``k`` largest off-diagonal counts of a confusion matrix as bars, largest on top."""
    pairs = most_confused_pairs(cm, labels, k)
    names = [f'{true} taken for {predicted}' for true, predicted, _ in pairs]
    fig = go.Figure(go.Bar(x=[count for _, _, count in pairs][::-1], y=names[::-1],
                           orientation='h', marker_color=WRONG))
    fig.update_layout(title=title, template=TEMPLATE, height=120 + 28 * max(len(pairs), 1),
                      xaxis_title='test images', margin=dict(l=220))
    return fig


@in_language
def weights_figure(W, labels=None, num_cols=5,
                   title='Weights as images: one template per class (blue: evidence for it)'):
    """Each column of a ``(num_inputs, num_classes)`` weight matrix as a ``side x side`` image.

    The scratch model's ``W`` has this shape; for ``nn.Dense`` pass
    ``weight.data().T``. One symmetric colour scale for all classes, white at 0.
    """
    W = to_numpy(W)
    side = math.isqrt(W.shape[0]) if W.ndim == 2 else 0
    if W.ndim != 2 or side * side != W.shape[0]:
        raise ValueError(f'expected weights (side*side, num_classes) such as (784, 10), got shape '
                         f'{W.shape}; for nn.Dense pass weight.data().T')
    templates = W.T.reshape(-1, side, side)  # (classes, side, side)
    bound = float(onp.abs(W).max()) or 1.0
    names = _class_names(labels, W.shape[1])
    return go.Figure(_image_grid(templates, names, num_cols, 'RdBu', -bound, bound, zmid=0.0,
                                 title=title, cell=190, showscale=True, colorbar_title='weight',
                                 hover='pixel (%{y}, %{x}): weight %{z:.4f}'))


@in_language
def loss_functions_figure(delta=1.0, max_residual=3.0, num=301):
    """L2, L1 and Huber loss of a residual ``r = y_hat - y``, and their derivatives in ``r``.

    As in Gluon: L2 is ``r**2 / 2``; Huber is ``r**2 / (2 delta)`` for
    ``|r| < delta`` and ``|r| - delta / 2`` beyond (``HuberLoss(rho=delta)``).
    """
    r = onp.linspace(-max_residual, max_residual, num)
    quadratic = onp.abs(r) < delta
    curves = (
        ('L2', 0.5 * r ** 2, r),
        ('L1', onp.abs(r), onp.sign(r)),
        (f'Huber (delta={delta:g})', onp.where(quadratic, r ** 2 / (2 * delta),
                                               onp.abs(r) - delta / 2),
         onp.where(quadratic, r / delta, onp.sign(r))),
    )
    fig = make_subplots(rows=1, cols=2, subplot_titles=('loss', 'gradient d loss / d y_hat'))
    for i, (name, loss, grad) in enumerate(curves):
        colour = qualitative.Plotly[i]
        fig.add_trace(go.Scatter(x=r, y=loss, name=name, meta='loss', legendgroup=name,
                                 line=dict(color=colour)), row=1, col=1)
        fig.add_trace(go.Scatter(x=r, y=grad, name=name, meta='gradient', legendgroup=name,
                                 showlegend=False, line=dict(color=colour)), row=1, col=2)
    for x in (-delta, delta):
        fig.add_vline(x=x, line_dash='dot', line_color='gray')
    fig.update_xaxes(title_text='residual y_hat - y')
    fig.update_layout(title=f'Regression losses: L2, L1 and Huber (delta = {delta:g}, dotted)',
                      template=TEMPLATE, height=420)
    return fig


@in_language
def softmax_stability_figure(max_logit=120.0, num=241):
    """Naive vs stable softmax and cross-entropy in float32 as the logits grow.

    The logits are ``(t, t/2, 0)`` for ``t`` in ``[0, max_logit]``. Naively,
    ``exp(t)`` overflows to inf beyond ~88.7, so the top probability becomes
    ``inf/inf = nan`` and the cross-entropy of the last class ``-log 0 = inf``.
    Subtracting the maximum (softmax) and LogSumExp (cross-entropy) stay finite.
    The naive traces keep their nan/inf values (drawn as gaps).
    """
    t = onp.linspace(0.0, max_logit, num, dtype=onp.float32)
    o = onp.stack([t, t / 2, onp.zeros_like(t)], axis=1)  # (num, 3) logits
    label = 2  # the class with the smallest logit: its probability underflows first
    with onp.errstate(over='ignore', invalid='ignore', divide='ignore'):
        # the textbook formula exp(o) / sum exp(o), shown here only to watch it fail
        e = onp.exp(o)
        naive_p = e / e.sum(axis=1, keepdims=True)
        naive_ce = -onp.log(naive_p[:, label])
    shifted = o - o.max(axis=1, keepdims=True)
    stable_p = onp.exp(shifted) / onp.exp(shifted).sum(axis=1, keepdims=True)
    stable_ce = -(shifted[:, label] - onp.log(onp.exp(shifted).sum(axis=1)))
    fig = make_subplots(rows=1, cols=2, subplot_titles=(
        'softmax: probability of the largest logit', 'cross-entropy of the smallest-logit class'))
    panels = ((1, 'softmax', naive_p[:, 0], stable_p[:, 0], 'subtract the max'),
              (2, 'cross-entropy', naive_ce, stable_ce, 'LogSumExp'))
    for col, what, naive, stable, fix in panels:
        shown = ['nan' if onp.isnan(v) else 'inf' if onp.isinf(v) else f'{v:.6g}' for v in naive]
        fig.add_trace(go.Scatter(x=t, y=naive, name=f'naive {what}', meta=f'naive {what}',
                                 text=shown, hovertemplate='t=%{x:.1f}: %{text}<extra></extra>',
                                 line=dict(color=WRONG, width=4)), row=1, col=col)
        fig.add_trace(go.Scatter(x=t, y=stable, name=f'stable {what} ({fix})',
                                 meta=f'stable {what}', line=dict(color='#1f77b4', dash='dash')),
                      row=1, col=col)
    broken = ~onp.isfinite(naive_p[:, 0]) | ~onp.isfinite(naive_ce)
    if broken.any():
        fig.add_vrect(x0=float(t[broken.argmax()]), x1=float(t[-1]), fillcolor=WRONG,
                      opacity=0.08, line_width=0, annotation_text='naive: nan / inf',
                      annotation_position='bottom right', annotation_bgcolor='white')
    fig.add_vline(x=FLOAT32_MAX_EXP, line_dash='dot', line_color='gray')
    fig.update_xaxes(title_text='t (logits t, t/2, 0), float32')
    fig.update_yaxes(title_text='probability', row=1, col=1)
    fig.update_yaxes(title_text='-log probability', row=1, col=2)
    fig.update_layout(title=f'Naive softmax overflows once exp(t) exceeds float32 '
                            f'(t > {FLOAT32_MAX_EXP:.2f}, dotted)', template=TEMPLATE, height=420)
    return fig
