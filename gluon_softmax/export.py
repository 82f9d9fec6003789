"""``python -m gluon_softmax.export NOTEBOOK [--execute] [--out FILE]``: a notebook as one HTML
page that opens offline with its figures and its formulas.

nbconvert's HTML already carries the figures (the package's Plotly renderer keeps them as HTML
with one copy of plotly.js), but it loads MathJax from a CDN, so offline every formula stays raw
LaTeX (``$o = xW + b$``). Here MathJax comes from the ``jupyter-server-mathjax`` package installed
beside Jupyter: the page renders its formulas on this machine without a network. (It points at
that copy by path: a page copied to another machine keeps its figures, and its formulas need
MathJax there or a network.)
"""
import os
import sys

from gluon_softmax.run import cli
from gluon_softmax.language import kernel_env
from gluon_softmax.run.files import WriteError, atomic_write

MATHJAX_CONFIG = 'TeX-AMS-MML_HTMLorMML-full,Safe'  # the configuration the package ships
CELL_TIMEOUT = 1800  # seconds one cell may take with --execute (the notebook's longest: ~2 min)


def skip_iri_grammar():
    """Keep jsonschema from building, at import, the grammar of a format no notebook uses.

    nbformat checks notebooks with jsonschema, which imports ``rfc3987_syntax`` where it is
    installed (jupyter_server brings it, with jupyter-server-mathjax). That module compiles a
    Lark grammar for the "iri" string format when it is imported: 2.0 of the 3.6 s that
    exporting a notebook without --execute took here. No notebook schema names a format and
    nbformat checks none, so the notebooks are checked the same way without it. Call before
    nbformat is imported; the tests' processes do too (``tests/conftest.py``)."""
    sys.modules.setdefault('rfc3987_syntax', None)


class ExportError(Exception):
    """A notebook that cannot be read or exported; the message names the file."""


def local_mathjax_url():
    """A ``file://`` URL of the MathJax that ``jupyter-server-mathjax`` installs."""
    try:
        import jupyter_server_mathjax  # pylint: disable=import-outside-toplevel
    except ImportError as e:
        raise ExportError('jupyter-server-mathjax is not installed (it brings MathJax for the '
                          "formulas): pip install -e '.[notebook]' or make notebook") from e
    path = os.path.join(os.path.dirname(jupyter_server_mathjax.__file__), 'static', 'MathJax.js')
    if not os.path.isfile(path):
        raise ExportError(f'{path}: not found in the installed jupyter-server-mathjax')
    from pathlib import Path  # pylint: disable=import-outside-toplevel
    return f'{Path(path).as_uri()}?config={MATHJAX_CONFIG}'


def export_html(nb):
    """The HTML page of the notebook node ``nb`` (nbconvert's default template), with MathJax
    loaded from this machine."""
    from nbconvert import HTMLExporter  # pylint: disable=import-outside-toplevel
    page, _ = HTMLExporter(mathjax_url=local_mathjax_url()).from_notebook_node(nb)
    return page


def read_notebook(path):
    import nbformat  # pylint: disable=import-outside-toplevel
    try:
        return nbformat.read(path, as_version=4)
    except OSError as e:
        raise ExportError(f'{path}: {e.strerror or e}') from e
    except Exception as e:  # nbformat raises JSON and validation errors of several kinds
        raise ExportError(f'{path}: not a Jupyter notebook ({type(e).__name__}: {e})') from e


def execute(nb, path):
    """Run every cell of ``nb`` in a kernel of this Python, in the notebook's own folder, told
    the notebook's path as Jupyter tells it (``gluon_softmax.language``)."""
    from nbclient import NotebookClient  # pylint: disable=import-outside-toplevel
    from nbclient.exceptions import CellExecutionError  # pylint: disable=import-outside-toplevel
    client = NotebookClient(nb, kernel_name='python3', timeout=CELL_TIMEOUT,
                            resources={'metadata': {'path': os.path.dirname(path) or '.'}})
    try:
        # the notebook's path, as Jupyter gives it: a *.zh.ipynb runs in Chinese
        client.execute(env=kernel_env(os.path.abspath(path)))
    except CellExecutionError as e:
        raise ExportError(f'{path}: a cell failed: {str(e).strip().splitlines()[-1]}') from e


def build_parser():
    p = cli.Parser(prog='python -m gluon_softmax.export', description=__doc__.split('\n')[0])
    p.add_argument('notebook', metavar='NOTEBOOK', help='the .ipynb file to export')
    p.add_argument('--execute', action='store_true',
                   help='run every cell first (default: export the outputs saved in the file)')
    p.add_argument('--out', metavar='FILE',
                   help='the HTML file to write (default: NOTEBOOK with .html)')
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    skip_iri_grammar()
    out = args.out or os.path.splitext(args.notebook)[0] + '.html'
    try:
        nb = read_notebook(args.notebook)
        if args.execute:
            execute(nb, args.notebook)
        page = export_html(nb)

        def write(tmp):
            with open(tmp, 'w', encoding='utf-8') as f:
                f.write(page)
        atomic_write(out, write)
    except (ExportError, WriteError) as e:
        print(f'error: {e}', file=sys.stderr)
        return 2
    print(f'wrote {out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
