"""The pages of a run: a report (settings, final metrics, figures) and its curves.

:func:`report_figures` runs a trained ``net`` over the test set and builds the
figures; :func:`report_html` lays them out with the run's settings on one page
that embeds plotly.js once, or loads the one copy written beside the run's pages
(:func:`write_plotly_js`), so it opens offline either way. A run that did not
complete says so, and why, on both pages.
"""
import datetime
import html
import os
import re

import numpy as onp
from mxnet import np

from gluon_softmax import plots, training
from gluon_softmax.data import TEXT_LABELS
from gluon_softmax.run.files import write_text
from gluon_softmax.run.model import as_model
from gluon_softmax.run.rundir import PLOTLY_JS

PREDICT_BATCH = 1000  # examples per forward pass when the test set is given as arrays
FINAL_METRICS = (('train_loss', 'train loss', '{:.4f}'),
                 ('train_acc', 'train accuracy', '{:.4f}'),
                 ('test_loss', 'test loss', '{:.4f}'),
                 ('test_acc', 'test accuracy', '{:.4f}'))
STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 24px auto;
       max-width: 1200px; color: #222; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { font-size: 1.2em; margin-top: 1.6em; border-bottom: 1px solid #ddd; padding-bottom: 4px; }
.meta { color: #666; margin-top: 0; }
.summary { font-size: 1.05em; margin: 0.2em 0; }
.status { color: #b00020; font-weight: 600; border-left: 4px solid #b00020; padding-left: 8px; }
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


def predict(net, data, ctx=None):
    """Labels, predicted classes and the probability of each prediction, as NumPy arrays."""
    model = as_model(net)
    ctx = ctx or model.ctx
    if _is_arrays(data):  # NumPy or MXNet arrays: minibatches of MXNet arrays on ctx
        data = ((np.array(X, ctx=ctx), np.array(y, ctx=ctx)) for X, y in batches(data))
    return training.predict(model.net, data, ctx)


def predict_labels(net, data, ctx=None):
    """Labels and predicted classes (``y_hat.argmax(axis=1)``) of a test set, as NumPy ints."""
    y, y_pred, _ = predict(net, data, ctx)
    return y, y_pred


def examples_at(data, indices):
    """The examples at positions ``indices`` (increasing) of a test set, as NumPy ``(X, y)``."""
    wanted, Xs, ys, start = onp.asarray(indices, dtype=onp.int64), [], [], 0
    for X, y in batches(data):
        rows = wanted[(wanted >= start) & (wanted < start + len(y))] - start
        if len(rows):
            Xs.append(plots.to_numpy(X)[rows])
            ys.append(plots.to_numpy(y)[rows])
        start += len(y)
        if start > wanted.max(initial=-1):
            break
    if not Xs:
        return onp.zeros((0, 1, 28, 28), onp.float32), onp.zeros(0, onp.int64)
    return onp.concatenate(Xs), onp.concatenate(ys)


def report_figures(net, test_iter_or_arrays, history, labels=TEXT_LABELS, ctx=None,
                   num_images=18, title='Softmax regression on Fashion-MNIST', subtitle=None):
    """The report's figures, ``{heading: Figure}``, for a trained ``net``.

    Parameters
    ----------
    net : a trained model: ``SoftmaxRegressionScratch``, a Gluon block returning logits, or
        a :class:`gluon_softmax.run.model.Model`.
    test_iter_or_arrays : the test set, as an iterator of ``(X, y)`` batches (``test_iter``)
        or as a pair of arrays ``(X, y)`` (NumPy or ``mxnet.np``).
    history : the list :func:`gluon_softmax.training.train` returned.
    labels : class names for the titles and axes.
    ctx : where to run ``net``; default: where its parameters are.
    num_images : how many test images the prediction grid shows (the first ones), and how
        many mistakes the gallery of misclassified images shows.
    subtitle : a line under the curves' title (the settings, say).
    """
    y, y_pred, p_pred = predict(net, test_iter_or_arrays, ctx)
    cm = plots.confusion_matrix(y, y_pred, len(labels))
    figures = {'Training curves': plots.curves_figure(history, title=title, subtitle=subtitle),
               'Confusion matrix': plots.confusion_figure(y, y_pred, labels),
               'Most-confused pairs': plots.confused_pairs_figure(cm, labels),
               'Accuracy per class': plots.per_class_accuracy_figure(y, y_pred, labels)}
    if num_images:
        wrong = onp.flatnonzero(y != y_pred)[:num_images]
        X_wrong, _ = examples_at(test_iter_or_arrays, wrong)
        figures['Mistakes'] = plots.predictions_figure(
            X_wrong, y[wrong], y_pred[wrong], labels, probabilities=p_pred[wrong],
            title=f'The first {len(wrong)} misclassified test images of {int((y != y_pred).sum())} '
                  '(title: true / predicted (its probability))')
        X_first, _ = examples_at(test_iter_or_arrays, onp.arange(min(num_images, len(y))))
        figures['Predictions'] = plots.predictions_figure(
            X_first, y[:len(X_first)], y_pred[:len(X_first)], labels,
            probabilities=p_pred[:len(X_first)],
            title=f'The first {len(X_first)} test images (title: true / predicted (its '
                  'probability); wrong ones in red)')
    figures['Weight templates'] = plots.weights_figure(as_model(net).weight_matrix(), labels)
    return figures


def _flatten(settings):
    """``{'hyperparameters': {'lr': 0.1}}`` -> ``[('lr', 0.1)]``, in order, each name once."""
    rows, seen = [], set()
    for key, value in settings.items():
        for name, item in (_flatten(value) if isinstance(value, dict) else [(str(key), value)]):
            if name not in seen:
                seen.add(name)
                rows.append((name, item))
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


def settings_summary(metrics):
    """One line of the settings that decide the results: ``concise, 10 epochs, lr 0.1, ...``."""
    hp = metrics.get('hyperparameters', {})
    parts = [metrics.get('impl') or hp.get('impl')]
    if 'epochs' in hp:
        parts.append(f"{hp['epochs']} epoch{'' if hp['epochs'] == 1 else 's'}")
    parts += [f'{name} {hp[key]:g}' if isinstance(hp.get(key), float) else f'{name} {hp[key]}'
              for key, name in (('lr', 'lr'), ('batch_size', 'batch size'),
                                ('momentum', 'momentum'), ('wd', 'weight decay'),
                                ('lr_schedule', 'schedule'), ('val_size', 'validation'),
                                ('resize', 'resize'))
              if hp.get(key) not in (None, 0, 0.0, 'constant')]
    if metrics.get('seed') is not None:
        parts.append(f"seed {metrics['seed']}")
    if metrics.get('ctx'):
        parts.append(f"on {metrics['ctx']}")
    return ', '.join(str(p) for p in parts if p)


def describe_end(metrics):
    """Why a run that did not complete ended, in words; None for a complete run."""
    status, ended = metrics.get('status'), metrics.get('ended') or {}
    if status in (None, 'complete'):
        return None
    done = len(metrics.get('epochs') or [])
    if status == 'diverged':
        return (f"diverged at epoch {ended.get('epoch', done + 1)}, batch "
                f"{ended.get('batch', '?')} (mean loss {ended.get('loss', float('nan')):g}, "
                f"bound {ended.get('max_loss', float('nan')):g}); {done} epoch"
                f"{'' if done == 1 else 's'} completed")
    if status == 'interrupted':
        return (f"interrupted by {ended.get('signal', 'a signal')} during epoch {done + 1}; "
                f"{done} epoch{'' if done == 1 else 's'} completed")
    if status == 'failed':
        return (f"failed during epoch {done + 1}: {ended.get('error', 'an error')}; "
                f"{done} epoch{'' if done == 1 else 's'} completed")
    return f'status {status}: the run had not ended when this was written'


def curves_html(history, metrics, plotly_js=True):
    """The curves of a run as one HTML page: settings in the subtitle, why it ended if early.

    ``plotly_js``: True embeds plotly.js; a file name such as ``'plotly.min.js'`` loads
    it from beside the page.
    """
    impl = metrics.get('impl')
    title = f'{impl} softmax regression' if impl else 'Softmax regression'
    note = describe_end(metrics)
    fig = plots.curves_figure(history, title=title, subtitle=settings_summary(metrics),
                              note=f'This run did not complete: {note}.' if note else None)
    return fig.to_html(include_plotlyjs=plotly_js, full_html=True,
                       config={'displaylogo': False, 'responsive': True})


def write_plotly_js(directory, name=PLOTLY_JS):
    """Write plotly.js beside a run's pages (once: an existing copy of this version is kept)."""
    from plotly.offline import get_plotlyjs
    path = os.path.join(directory, name)
    script = get_plotlyjs()
    if os.path.exists(path) and os.path.getsize(path) == len(script.encode()):
        return path
    write_text(path, script)
    return path


def _final_metrics(epochs):
    """``[(label, value)]`` of the last epoch, and the training time when every epoch has one."""
    final = []
    if epochs:
        last = epochs[-1]
        final.append(('epochs trained', last.get('epoch', len(epochs))))
        final += [(label, fmt.format(last[key])) for key, label, fmt in FINAL_METRICS
                  if key in last]
        if all('seconds' in e for e in epochs):
            final.append(('training time', f'{sum(e["seconds"] for e in epochs):.2f} s'))
    return final


def _history_tables(epochs, sessions):
    """The folded tables of every epoch and, for a resumed run, of every session."""
    parts = []
    columns = [k for k in ('train_loss', 'train_acc', 'val_loss', 'val_acc', 'test_loss',
                           'test_acc') if epochs and all(k in e for e in epochs)]
    per_epoch = [(e.get('epoch'), *[f'{e[k]:.4f}' for k in columns],
                  f'{e["seconds"]:.2f}' if 'seconds' in e else None) for e in epochs]
    rows = [(i + 1, s.get('ctx'), s.get('kvstore'), s.get('worker_processes'),
             s.get('after_epoch')) for i, s in enumerate(sessions)]
    if per_epoch:
        parts.append('<details><summary>every epoch</summary>' + _table(
            per_epoch, ('epoch', *[k.replace('_', ' ') for k in columns], 'seconds')) +
            '</details>')
    if len(rows) > 1:
        parts.append('<details><summary>sessions (the run was resumed)</summary>' + _table(
            rows, ('session', 'devices', 'kvstore', 'worker processes', 'after epoch')) +
            '</details>')
    return parts


def _figure_sections(figures, plotly_js):
    """One ``<section>`` per ``(heading, figure)``; plotly.js (``plotly_js``) with the first."""
    sections = []
    for i, (heading, fig) in enumerate(figures):
        div = fig.to_html(full_html=False, include_plotlyjs=plotly_js if i == 0 else False,
                          div_id=f'figure-{i + 1}-{_slug(heading)}',
                          config={'displaylogo': False, 'responsive': True})
        sections.append(f'<section class="figure"><h2>{html.escape(heading)}</h2>\n{div}\n'
                        '</section>')
    return sections


def report_html(metrics, figures, title=None, plotly_js=True):
    """One HTML page: run settings, final metrics, why the run ended if early, the figures.

    ``metrics`` is what the CLI writes to ``metrics.json`` (settings, with the
    per-epoch history under ``'epochs'``); ``figures`` maps headings to Plotly
    figures (a list of figures is headed by their titles). ``plotly_js``: True
    embeds plotly.js once, with the first figure (a self-contained page); a file
    name such as ``'plotly.min.js'`` loads it from beside the page.
    """
    if isinstance(figures, dict):
        figures = list(figures.items())
    else:
        figures = [(fig.layout.title.text or f'Figure {i + 1}', fig)
                   for i, fig in enumerate(figures)]
    epochs = list(metrics.get('epochs') or [])
    settings = {k: v for k, v in metrics.items() if k not in ('epochs', 'sessions', 'ended')}
    impl = metrics.get('impl')
    title = title or (f'{impl} softmax regression on Fashion-MNIST' if impl else
                      'Softmax regression on Fashion-MNIST')

    final = _final_metrics(epochs)
    parts = ['<!DOCTYPE html>', '<html lang="en">', '<head>', '<meta charset="utf-8">',
             f'<title>{html.escape(title)}</title>', f'<style>{STYLE}</style>', '</head>',
             '<body>', f'<h1>{html.escape(title)}</h1>',
             f'<p class="summary">{html.escape(settings_summary(metrics))}</p>',
             f'<p class="meta">report written {datetime.datetime.now():%Y-%m-%d %H:%M}</p>']
    ended = describe_end(metrics)
    if ended:
        parts.append(f'<p class="status">This run did not complete: {html.escape(ended)}. '
                     'The figures show the epochs that finished.</p>')
    parts += ['<div class="tables">',
              '<div><h2>Run settings</h2>' + _table(_flatten(settings)) + '</div>',
              '<div><h2>Final metrics</h2>' + (_table(final) if final else
                                               '<p>no completed epoch</p>') + '</div>',
              '</div>']
    parts += _history_tables(epochs, metrics.get('sessions') or [])
    parts += [*_figure_sections(figures, plotly_js), '</body>', '</html>']
    return '\n'.join(parts) + '\n'
