"""The notebook: committed without outputs, a pure client of the package, and it runs."""
import ast
import inspect
import json
import re
import sys
from pathlib import Path

import nbformat
import pytest

import gluon_softmax
from gluon_softmax import concise, context, data, plots, report, scratch, training

NOTEBOOK = Path(__file__).resolve().parent.parent / 'notebooks' / 'softmax_regression.ipynb'
# the short version: two epochs (so the live plot is updated once), two-point sweeps,
# three-epoch long runs
SHORT = {'GLUON_SOFTMAX_NB_EPOCHS': '2', 'GLUON_SOFTMAX_NB_LRS': '0.1,1',
         'GLUON_SOFTMAX_NB_BATCH_SIZES': '256,1024', 'GLUON_SOFTMAX_NB_LONG_EPOCHS': '3'}
PLOTLY_MIME = 'application/vnd.plotly.v1+json'


def read_notebook():
    return nbformat.read(str(NOTEBOOK), as_version=4)


def code_cells(nb):
    return [cell for cell in nb.cells if cell.cell_type == 'code']


def test_committed_notebook_has_no_outputs():
    nb = read_notebook()
    nbformat.validate(nb)
    for cell in code_cells(nb):
        assert cell.outputs == [], f'cell with outputs: {cell.source[:80]!r}'
        assert cell.execution_count is None, f'cell with a count: {cell.source[:80]!r}'
    assert nb.metadata.kernelspec.name == 'python3'


def package_names():
    """Public functions and classes defined in the package's modules."""
    names = set(gluon_softmax.__all__)
    for module in (concise, context, data, plots, report, scratch, training):
        names.update(name for name, obj in vars(module).items()
                     if not name.startswith('_') and (inspect.isfunction(obj) or
                                                      inspect.isclass(obj))
                     and obj.__module__ == module.__name__)
    return names


def test_notebook_redefines_nothing_of_the_package():
    defined = set()
    for cell in code_cells(read_notebook()):
        for node in ast.walk(ast.parse(cell.source)):
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                defined.add(node.name)
            assert not (isinstance(node, ast.ImportFrom) and
                        any(alias.name == '*' for alias in node.names)), 'no star imports'
    assert not defined & package_names(), f'redefined: {sorted(defined & package_names())}'


def test_parameter_cell_reads_the_environment_with_the_books_defaults():
    source = code_cells(read_notebook())[0].source
    for name in SHORT:
        assert name in source
    assert "os.environ.get('GLUON_SOFTMAX_NB_EPOCHS', 10)" in source
    assert "'GLUON_SOFTMAX_NB_LR', 0.1" in source and "'GLUON_SOFTMAX_NB_BATCH_SIZE', 256" in source


def plotly_outputs(cell):
    return [out for out in cell.outputs if PLOTLY_MIME in out.get('data', {})]


@pytest.mark.integration
def test_notebook_runs_in_its_short_setting(tmp_path, monkeypatch, real_data_dir):
    from ipykernel.kernelspec import install
    from nbclient import NotebookClient

    # A kernel spec that starts this interpreter, found before any other 'python3' spec
    # (JUPYTER_PATH is searched first), so the kernel sees the package of this venv.
    install(kernel_name='python3', prefix=str(tmp_path / 'jupyter'))
    monkeypatch.setenv('JUPYTER_PATH', str(tmp_path / 'jupyter' / 'share' / 'jupyter'))
    for name, value in SHORT.items():
        monkeypatch.setenv(name, value)

    nb = read_notebook()
    nb.cells.append(nbformat.v4.new_code_cell('import sys\nprint(sys.prefix)'))
    client = NotebookClient(nb, kernel_name='python3', timeout=300, allow_errors=False,
                            resources={'metadata': {'path': str(NOTEBOOK.parent)}})
    client.execute()  # raises CellExecutionError on the first failing cell

    cells = code_cells(nb)
    assert cells[-1].outputs[0].text.strip() == sys.prefix, 'the kernel ran another Python'
    assert not [out for cell in cells for out in cell.outputs if out.output_type == 'error']
    first = ''.join(out.get('text', '') for out in cells[0].outputs)
    assert first.startswith('2 epochs, batch size 256, lr 0.1')

    # the live curves: one output per training cell, updated in place to both epochs
    live_cells = [cell for cell in cells if 'LiveCurves(' in cell.source]
    assert len(live_cells) == 2
    for cell in live_cells:
        (figure,) = plotly_outputs(cell)
        assert figure['data'][PLOTLY_MIME]['data'][0]['x'] == [1, 2]

    text = '\n'.join(out.get('text', '') for cell in cells for out in cell.outputs)
    assert re.search(r'naive -log softmax: \[\s*inf', text)  # the overflow, shown
    if context.num_gpus() == 0:
        assert 'ContextError: --ctx ' in text
    assert 'lr 1:' in text and 'batch 1024:' in text  # both sweeps ran their two points
    # one epoch on two CPU contexts ends where one context does
    difference = re.search(r'largest weight difference after one epoch: (\S+)', text)
    assert difference and float(difference.group(1)) < 1e-6
    figures = sum(len(plotly_outputs(cell)) for cell in cells)
    assert figures >= 14  # every figure of the walk-through was displayed
    json.dumps(nb)  # the executed notebook is still plain JSON
