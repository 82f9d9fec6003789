"""Figures as pure functions: data in, ``plotly.graph_objects.Figure`` out (nothing is shown)."""
import plotly.graph_objects as go
from plotly.subplots import make_subplots

CURVES = (('train_loss', 'train loss'), ('train_acc', 'train acc'), ('test_acc', 'test acc'))


def _runs(history):
    """Accept one history (list of per-epoch dicts) or ``{run name: history}``."""
    if isinstance(history, dict):
        return dict(history)
    return {'': list(history)}


def curves_figure(history, title='Softmax regression on Fashion-MNIST'):
    """Train loss, train accuracy and test accuracy against epoch, lines+markers.

    ``history`` is what :func:`gluon_softmax.training.train` returns, or a dict
    mapping run names to such histories to overlay several runs.
    """
    runs = _runs(history)
    fig = make_subplots(rows=1, cols=2, subplot_titles=('loss', 'accuracy'))
    for run, entries in runs.items():
        epochs = [e['epoch'] for e in entries]
        for key, label in CURVES:
            name = f'{run} {label}'.strip()
            fig.add_trace(go.Scatter(x=epochs, y=[e[key] for e in entries], name=name,
                                     mode='lines+markers', meta=key),
                          row=1, col=1 if key == 'train_loss' else 2)
    fig.update_xaxes(title_text='epoch')
    fig.update_yaxes(title_text='mean cross-entropy', row=1, col=1)
    fig.update_yaxes(title_text='accuracy', row=1, col=2)
    fig.update_layout(title=title, template='plotly_white', height=420)
    return fig
