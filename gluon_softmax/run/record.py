"""The record of a run in its directory, kept true as it goes: ``metrics.json``,
``curves.html``, ``report.html``."""
import json
import os

from gluon_softmax.run.files import WriteError, write_text
from gluon_softmax.run.rundir import CURVES, METRICS, PLOTLY_JS, REPORT


def write_metrics(out, metrics, history, status):
    """Write ``metrics.json`` with the history so far and the run's status."""
    metrics = {**metrics, 'status': status, 'epochs': history}
    write_text(os.path.join(out, METRICS), json.dumps(metrics, indent=2) + '\n')


def write_pages(out, metrics, model=None, test_iter=None):
    """Write ``curves.html`` and ``report.html``, which load the one ``plotly.min.js`` beside them.

    ``metrics`` holds the status and the history (``'epochs'``). The report shows
    the model (predictions, mistakes, weights) only when ``model`` is given: for a
    run that ended early it shows the curves and why the run ended.
    """
    from gluon_softmax import plots
    from gluon_softmax.run import report
    history = metrics['epochs']
    report.write_plotly_js(out)
    write_text(os.path.join(out, CURVES), report.curves_html(history, metrics, PLOTLY_JS))
    title, subtitle = f"{metrics['impl']} softmax regression", report.settings_summary(metrics)
    if model is not None:
        figures = report.report_figures(model, test_iter, history, title=title, subtitle=subtitle)
    else:
        figures = {'Training curves': plots.curves_figure(history, title=title,
                                                          subtitle=subtitle)}
    write_text(os.path.join(out, REPORT), report.report_html(metrics, figures,
                                                             plotly_js=PLOTLY_JS))


def end_early(out, metrics, done, status, ended, stop):
    """Record a run that stopped before its last epoch: metrics, curves and report say why.

    Written whole even if another signal comes meanwhile.
    """
    metrics['ended'] = ended

    def write():
        write_metrics(out, metrics, done, status)
        write_pages(out, {**metrics, 'status': status, 'epochs': done})
    stop.run_whole(write, raise_after=False)


def record_failure(out, metrics, done, error, stop):
    """After a write error: make metrics.json say ``failed``, never ``running``; what to add to
    the error line (empty when it was recorded, or when no metrics.json was written yet).

    Only metrics.json, the smallest file: the pages may be what could not be written (a full
    disk, a file-size limit).
    """
    if not done:
        return ''
    metrics['ended'] = {'error': str(error)}
    try:
        stop.run_whole(lambda: write_metrics(out, metrics, done, 'failed'), raise_after=False)
    except WriteError as e:
        return f'; {METRICS} could not be updated either ({e})'
    return ''
