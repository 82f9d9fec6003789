"""One self-contained HTML page for a trained run: settings, final metrics and figures.

:func:`report_figures` runs a trained ``net`` over the test set and builds the
figures; :func:`report_html` lays them out with the run's settings on one page
that embeds plotly.js once, so it opens offline.
"""
import datetime
import html
import re

import numpy as onp
from mxnet import np

from gluon_softmax import plots
from gluon_softmax.data import TEXT_LABELS
from gluon_softmax.models import as_model

PREDICT_BATCH = 1000  # examples per forward pass when the test set is given as arrays
FINAL_METRICS = (('train_loss', 'train loss', '{:.4f}'),
                 ('train_acc', 'train accuracy', '{:.4f}'),
                 ('test_acc', 'test accuracy', '{:.4f}'))
STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 24px auto;
       max-width: 1200px; color: #222; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { font-size: 1.2em; margin-top: 1.6em; border-bottom: 1px solid #ddd; padding-bottom: 4px; }
.meta { color: #666; margin-top: 0; }
.tables { display: flex; gap: 48px; flex-wrap: wrap; align-items: flex-start; }
table { border-collapse: collapse; font-size: 0.95em; }
th, td { padding: 4px 12px; border-bottom: 1px solid #eee; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
th { background: #f6f6f6; }
details { margin-top: 12px; }
section.figure { margin-top: 8px; }
"""


def _is_arrays(data):
    """True for a test set given as ``(X, y)`` arrays rather than an iterator of batches."""
    return (isinstance(data, (tuple, list)) and len(data) == 2
            and all(hasattr(a, 'shape') for a in data) and len(data[1].shape) == 1)


def batches(data, batch_size=PREDICT_BATCH):
    """``(X, y)`` minibatches of a DataLoader / ArrayLoader, or of ``(X, y)`` arrays."""
    if not _is_arrays(data):
        yield from data
        return
    X, y = data
    for start in range(0, len(y), batch_size):
        yield X[start:start + batch_size], y[start:start + batch_size]


def predict_labels(net, data, ctx=None):
    """Labels and predicted classes (``y_hat.argmax(axis=1)``) of a test set, as NumPy ints."""
    model = as_model(net)
    ctx = ctx or model.ctx
    ys, preds = [], []
    for X, y in batches(data):
        X = np.array(X, ctx=ctx)
        # argmax on the device, one small copy per batch back to the host
        preds.append(model.net(X).argmax(axis=1).asnumpy().astype(onp.int64))
        ys.append(plots.to_numpy(y).astype(onp.int64))
    if not ys:
        raise ValueError('the test set is empty')
    return onp.concatenate(ys), onp.concatenate(preds)


def first_examples(data, n):
    """The first ``n`` examples of a test set as NumPy ``(X, y)``."""
    Xs, ys, count = [], [], 0
    for X, y in batches(data):
        Xs.append(plots.to_numpy(X[:n - count]))
        ys.append(plots.to_numpy(y[:n - count]))
        count += len(ys[-1])
        if count >= n:
            break
    return onp.concatenate(Xs), onp.concatenate(ys)


def report_figures(net, test_iter_or_arrays, history, labels=TEXT_LABELS, ctx=None,
                   num_images=18, title='Softmax regression on Fashion-MNIST'):
    """The report's figures, ``{heading: Figure}``, for a trained ``net``.

    Parameters
    ----------
    net : a trained model: ``SoftmaxRegressionScratch``, a Gluon block returning logits, or
        a :class:`gluon_softmax.models.Model`.
    test_iter_or_arrays : the test set, as an iterator of ``(X, y)`` batches (``test_iter``)
        or as a pair of arrays ``(X, y)`` (NumPy or ``mxnet.np``).
    history : the list :func:`gluon_softmax.training.train` returned.
    labels : class names for the titles and axes.
    ctx : where to run ``net``; default: where its parameters are.
    num_images : how many test images the prediction grid shows (the first ones).
    """
    y, y_pred = predict_labels(net, test_iter_or_arrays, ctx)
    figures = {'Training curves': plots.curves_figure(history, title=title),
               'Confusion matrix': plots.confusion_figure(y, y_pred, labels),
               'Accuracy per class': plots.per_class_accuracy_figure(y, y_pred, labels)}
    if num_images:
        X_first, _ = first_examples(test_iter_or_arrays, num_images)
        figures['Predictions'] = plots.predictions_figure(
            X_first, y[:len(X_first)], y_pred[:len(X_first)], labels,
            title=f'The first {len(X_first)} test images (title: true / predicted; '
                  'wrong ones in red)')
    figures['Weight templates'] = plots.weights_figure(as_model(net).weight_matrix(), labels)
    return figures


def _flatten(settings, prefix=''):
    """``{'hyperparameters': {'lr': 0.1}}`` -> ``[('lr', 0.1)]``, in order."""
    rows = []
    for key, value in settings.items():
        if isinstance(value, dict):
            rows.extend(_flatten(value, prefix))
        else:
            rows.append((prefix + str(key), value))
    return rows


def _cell(value):
    """A value as the text of a table cell."""
    if value is None:
        return '&ndash;'
    if isinstance(value, float):
        return f'{value:.6g}'
    return html.escape(str(value))


def _table(rows, header=None):
    """An HTML table: one row per ``(name, value, ...)``, numbers right-aligned."""
    out = ['<table>']
    if header:
        out.append('<tr>' + ''.join(f'<th>{html.escape(h)}</th>' for h in header) + '</tr>')
    for name, *values in rows:
        cells = [f'<th>{html.escape(str(name))}</th>']
        for text in map(_cell, values):
            numeric = re.fullmatch(r'[-+0-9.e]+( s)?', text)
            cells.append(f'<td class="num">{text}</td>' if numeric else f'<td>{text}</td>')
        out.append('<tr>' + ''.join(cells) + '</tr>')
    out.append('</table>')
    return '\n'.join(out)


def _slug(text):
    return re.sub(r'[^a-z0-9]+', '-', text.lower()).strip('-') or 'figure'


def report_html(metrics, figures, title=None):
    """One self-contained HTML page: run settings, final metrics and the figures.

    ``metrics`` is what the CLI writes to ``metrics.json`` (settings, with the
    per-epoch history under ``'epochs'``); ``figures`` maps headings to Plotly
    figures (a list of figures is headed by their titles). plotly.js is
    embedded once, with the first figure.
    """
    if isinstance(figures, dict):
        figures = list(figures.items())
    else:
        figures = [(fig.layout.title.text or f'Figure {i + 1}', fig)
                   for i, fig in enumerate(figures)]
    epochs = list(metrics.get('epochs') or [])
    settings = {k: v for k, v in metrics.items() if k != 'epochs'}
    impl = metrics.get('impl')
    title = title or (f'{impl} softmax regression on Fashion-MNIST' if impl else
                      'Softmax regression on Fashion-MNIST')

    final = []
    if epochs:
        last = epochs[-1]
        final.append(('epochs trained', last.get('epoch', len(epochs))))
        final += [(label, fmt.format(last[key])) for key, label, fmt in FINAL_METRICS
                  if key in last]
        if all('seconds' in e for e in epochs):
            final.append(('training time', f'{sum(e["seconds"] for e in epochs):.2f} s'))
    per_epoch = [(e.get('epoch'), *[f'{e[k]:.4f}' for k in ('train_loss', 'train_acc', 'test_acc')],
                  f'{e["seconds"]:.2f}' if 'seconds' in e else None)
                 for e in epochs if all(k in e for k in ('train_loss', 'train_acc', 'test_acc'))]

    parts = ['<!DOCTYPE html>', '<html lang="en">', '<head>', '<meta charset="utf-8">',
             f'<title>{html.escape(title)}</title>', f'<style>{STYLE}</style>', '</head>',
             '<body>', f'<h1>{html.escape(title)}</h1>',
             f'<p class="meta">report written {datetime.datetime.now():%Y-%m-%d %H:%M}</p>',
             '<div class="tables">',
             '<div><h2>Run settings</h2>' + _table(_flatten(settings)) + '</div>',
             '<div><h2>Final metrics</h2>' + (_table(final) if final else
                                              '<p>no completed epoch</p>') + '</div>',
             '</div>']
    if per_epoch:
        parts.append('<details><summary>every epoch</summary>' + _table(
            per_epoch, ('epoch', 'train loss', 'train acc', 'test acc', 'seconds')) +
            '</details>')
    for i, (heading, fig) in enumerate(figures):
        div = fig.to_html(full_html=False, include_plotlyjs=i == 0,
                          div_id=f'figure-{i + 1}-{_slug(heading)}',
                          config={'displaylogo': False, 'responsive': True})
        parts.append(f'<section class="figure"><h2>{html.escape(heading)}</h2>\n{div}\n'
                     '</section>')
    parts += ['</body>', '</html>']
    return '\n'.join(parts) + '\n'
