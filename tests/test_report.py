"""The HTML report: its figures, its structure, and how it renders in a real browser."""
import html.parser
import os
import shutil

import mxnet as mx
import numpy as onp
import pytest
from mxnet import np, npx
from plotly.offline import get_plotlyjs

from conftest import RenderedFigures, chromium, run_chromium
from gluon_softmax import concise, plots, scratch
from gluon_softmax.run import report
from gluon_softmax.data import TEXT_LABELS, ArrayLoader

npx.set_np()

FIGURES = ('Training curves', 'Confusion matrix', 'Most-confused pairs', 'Accuracy per class',
           'Mistakes', 'Predictions', 'Weight templates')


@pytest.fixture
def test_set():
    """60 random 'images' and labels: enough for every figure, no real data needed."""
    rng = onp.random.default_rng(0)
    return (rng.random((60, 1, 28, 28), dtype=onp.float32),
            rng.integers(0, 10, 60).astype(onp.int32))


@pytest.fixture
def net():
    mx.random.seed(0)
    return scratch.SoftmaxRegressionScratch(sigma=0.1)


HISTORY = [{'epoch': e, 'train_loss': 1.0 / e, 'train_acc': 0.6 + 0.05 * e,
            'test_acc': 0.55 + 0.05 * e, 'seconds': 0.25} for e in (1, 2, 3)]
METRICS = {'impl': 'scratch', 'ctx': 'cpu(0)', 'seed': 7,
           'hyperparameters': {'epochs': 3, 'batch_size': 256, 'lr': 0.1, 'resize': None},
           'status': 'complete', 'epochs': HISTORY}


def reference_predictions(net, X):
    """argmax(X W + b) in plain NumPy."""
    logits = X.reshape(len(X), -1) @ net.W.asnumpy() + net.b.asnumpy()
    return logits.argmax(axis=1)


def test_report_figures_from_arrays(net, test_set):
    X, y = test_set
    figures = report.report_figures(net, (X, y), HISTORY, num_images=12)
    assert tuple(figures) == FIGURES
    y_pred = reference_predictions(net, X)
    cm = figures['Confusion matrix'].data[0].z
    assert (onp.asarray(cm) == plots.confusion_matrix(y, y_pred, 10)).all()
    assert list(figures['Confusion matrix'].data[0].x) == list(TEXT_LABELS)
    predictions = figures['Predictions']
    assert len(predictions.data) == 12
    assert [t.meta['correct'] for t in predictions.data] == list(y[:12] == y_pred[:12])
    assert onp.allclose(predictions.data[5].z, X[5, 0])
    weights = figures['Weight templates']
    assert onp.allclose(weights.data[2].z, net.W.asnumpy()[:, 2].reshape(28, 28))
    assert [t.name for t in figures['Training curves'].data] == ['train loss', 'train acc',
                                                               'test acc']
    # the gallery of mistakes: the first 12 wrong predictions, with their probabilities
    wrong = onp.flatnonzero(y != y_pred)[:12]
    mistakes = figures['Mistakes']
    assert len(mistakes.data) == len(wrong) == 12
    assert not any(t.meta['correct'] for t in mistakes.data)
    assert onp.allclose(mistakes.data[3].z, X[wrong[3], 0])
    logits = X.reshape(len(X), -1) @ net.W.asnumpy() + net.b.asnumpy()
    P = onp.exp(logits - logits.max(axis=1, keepdims=True))
    P /= P.sum(axis=1, keepdims=True)
    first = mistakes.layout.annotations[0].text
    assert first == (f'{TEXT_LABELS[y[wrong[0]]]} / {TEXT_LABELS[y_pred[wrong[0]]]} '
                     f'({P[wrong[0]].max():.0%})')
    # the most-confused pairs: the largest off-diagonal counts, largest on top
    pairs = plots.most_confused_pairs(plots.confusion_matrix(y, y_pred, 10), TEXT_LABELS, 10)
    bars = figures['Most-confused pairs'].data[0]
    assert list(bars.x)[::-1] == [count for _, _, count in pairs]
    assert list(bars.y)[-1] == f'{pairs[0][0]} taken for {pairs[0][1]}'


def test_report_figures_from_a_test_iter_and_a_concise_net(test_set):
    X, y = test_set
    mx.random.seed(1)
    net = concise.build_net(sigma=0.1)
    test_iter = ArrayLoader(X, y, batch_size=16)  # 4 batches, the last one short
    figures = report.report_figures(net, test_iter, HISTORY, num_images=20)
    W = net[0].weight.data().asnumpy().T  # Dense stores (10, 784)
    logits = X.reshape(60, -1) @ W + net[0].bias.data().asnumpy()
    expected = plots.confusion_matrix(y, logits.argmax(axis=1), 10)
    assert (onp.asarray(figures['Confusion matrix'].data[0].z) == expected).all()
    assert len(figures['Predictions'].data) == 20  # gathered across two batches
    assert onp.allclose(figures['Predictions'].data[17].z, X[17, 0])
    assert onp.allclose(figures['Weight templates'].data[9].z, W[:, 9].reshape(28, 28))


def test_predict_labels_takes_mxnet_arrays_and_checks_emptiness(net, test_set):
    X, y = test_set
    y_true, y_pred = report.predict_labels(net, (np.array(X), np.array(y)))
    assert (y_true == y).all() and (y_pred == reference_predictions(net, X)).all()
    with pytest.raises(ValueError, match='empty'):
        report.predict_labels(net, (X[:0], y[:0]))


class Finder(html.parser.HTMLParser):
    """The ids of the plotly graph divs and the external sources of a page."""

    def __init__(self, page):
        super().__init__()
        self.ids, self.sources = [], []
        self.feed(page)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == 'div' and 'plotly-graph-div' in (attrs.get('class') or '').split():
            self.ids.append(attrs.get('id'))
        if tag in ('script', 'link', 'img', 'iframe') and (attrs.get('src') or attrs.get('href')):
            self.sources.append(attrs.get('src') or attrs.get('href'))


def graph_divs(page):
    return Finder(page).ids


def test_report_html_embeds_plotly_once_and_has_one_div_per_figure(net, test_set):
    figures = report.report_figures(net, test_set, HISTORY)
    page = report.report_html(METRICS, figures)
    assert page.startswith('<!DOCTYPE html>') and page.rstrip().endswith('</html>')
    bundle_head = get_plotlyjs()[:300]
    assert page.count(bundle_head) == 1  # plotly.js inlined exactly once
    assert Finder(page).sources == []  # no script or style fetched: it opens offline
    ids = graph_divs(page)
    assert len(ids) == len(figures) == 7 and len(set(ids)) == 7
    for heading in figures:
        assert f'<h2>{heading}</h2>' in page
    # settings (nested hyperparameters flattened) and the final epoch's metrics
    for text in ('<th>impl</th><td>scratch</td>', '<th>batch_size</th><td class="num">256</td>',
                 '<th>seed</th><td class="num">7</td>',
                 '<th>test accuracy</th><td class="num">0.7000</td>',
                 '<th>train loss</th><td class="num">0.3333</td>',
                 '<th>epochs trained</th><td class="num">3</td>',
                 '<th>training time</th><td class="num">0.75 s</td>'):
        assert text in page
    assert '<title>scratch softmax regression on Fashion-MNIST</title>' in page
    assert 'did not complete' not in page
    assert '<p class="summary">scratch, 3 epochs, lr 0.1, batch size 256, seed 7, on cpu(0)' in page


def test_pages_can_share_one_plotly_js_beside_them(net, test_set, tmp_path):
    figures = report.report_figures(net, test_set, HISTORY)
    page = report.report_html(METRICS, figures, plotly_js=report.PLOTLY_JS)
    curves = report.curves_html(HISTORY, METRICS, plotly_js=report.PLOTLY_JS)
    for html_page in (page, curves):
        assert get_plotlyjs()[:300] not in html_page  # not inlined
        assert Finder(html_page).sources == [report.PLOTLY_JS]  # a relative name: offline
    path = report.write_plotly_js(str(tmp_path))
    assert open(path, encoding='utf-8').read() == get_plotlyjs()
    mtime = os.stat(path).st_mtime_ns
    report.write_plotly_js(str(tmp_path))  # already there: kept, not rewritten
    assert os.stat(path).st_mtime_ns == mtime


@pytest.mark.parametrize('metrics, says', [
    ({'status': 'diverged', 'ended': {'epoch': 3, 'batch': 20, 'loss': 2345.0, 'max_loss': 100.0}},
     'This run did not complete: diverged at epoch 3, batch 20 (mean loss 2345, bound 100); '
     '2 epochs completed'),
    ({'status': 'interrupted', 'ended': {'signal': 'SIGINT'}},
     'This run did not complete: interrupted by SIGINT during epoch 3; 2 epochs completed'),
    ({'status': 'running'}, 'This run did not complete: status running'),
])
def test_pages_of_a_run_that_ended_early_say_why(metrics, says):
    metrics = {**METRICS, **metrics, 'epochs': HISTORY[:2]}
    page = report.report_html(metrics, {})
    curves = report.curves_html(HISTORY[:2], metrics)
    assert says in page and says in curves
    assert 'complete' not in page.replace('did not complete', '').replace('completed', '')


def test_report_html_escapes_and_accepts_a_list_of_figures():
    fig = plots.curves_figure(HISTORY, title='curves <b>')
    page = report.report_html({'impl': '<script>', 'epochs': []}, [fig, fig])
    assert '<td>&lt;script&gt;</td>' in page and 'no completed epoch' in page
    assert len(graph_divs(page)) == 2
    assert page.count(get_plotlyjs()[:300]) == 1


# ----------------------------------------------------------------------------- browser

# chromium(), run_chromium() and RenderedFigures are in conftest.py (the notebook's too)


@pytest.mark.slow
@pytest.mark.integration
def test_report_renders_every_figure_in_headless_chromium(tmp_path, net, test_set):
    browser = chromium()
    # as the CLI writes it: plotly.js once beside the page, loaded by a relative name
    page = report.report_html(METRICS, report.report_figures(net, test_set, HISTORY),
                              plotly_js=report.PLOTLY_JS)
    report.write_plotly_js(str(tmp_path))
    path = tmp_path / 'report.html'
    path.write_text(page, encoding='utf-8')
    url = path.as_uri()

    dom = run_chromium(tmp_path, '--virtual-time-budget=5000', '--dump-dom', url).stdout
    parser = RenderedFigures()
    parser.feed(dom)
    assert len(parser.svgs) == len(FIGURES), f'expected {len(FIGURES)} plot divs, got {parser.svgs}'
    for div_id, classes in parser.svgs.items():
        assert 'main-svg' in classes, f'{div_id} was not drawn by plotly.js'
    assert 'js-plotly-plot' in dom  # plotly.js marks each div it has plotted

    screenshot = tmp_path / 'report.png'
    run_chromium(tmp_path, '--virtual-time-budget=5000', f'--screenshot={screenshot}',
                 '--window-size=1280,2400', url)
    assert screenshot.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    try:
        from PIL import Image
    except ImportError:  # Pillow comes with d2l's matplotlib; without it, size is the check
        assert screenshot.stat().st_size > 50_000
    else:
        with Image.open(screenshot) as image:
            assert image.size == (1280, 2400)
            # a blank or unstyled page has a handful of colours; the figures bring hundreds
            assert len(image.convert('RGB').getcolors(maxcolors=1 << 20)) > 200
    print(f'screenshot of {browser} rendering the report: {screenshot}')
    keep = os.environ.get('GLUON_SOFTMAX_SCREENSHOT_DIR')
    if keep:
        os.makedirs(keep, exist_ok=True)
        shutil.copy(screenshot, os.path.join(keep, 'report.png'))
