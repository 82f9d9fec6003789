"""python -m gluon_softmax.export: a notebook as one page whose formulas render offline."""
import importlib.machinery
import sys
from pathlib import Path
from urllib.parse import urlparse

import nbformat
import pytest

import procs
from conftest import run_chromium
from gluon_softmax import export

FORMULA = r'$\mathrm{softmax}(\mathbf{o})_j = \frac{\exp(o_j)}{\sum_k \exp(o_k)}$'


def small_notebook(path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell(f'Softmax: {FORMULA}, and $o = xW + b$.'),
                nbformat.v4.new_code_cell('1 + 1')]
    nbformat.write(nb, str(path))
    return path


def test_the_page_loads_mathjax_from_this_machine(tmp_path, capsys):
    notebook = small_notebook(tmp_path / 'small.ipynb')
    assert export.main([str(notebook)]) == 0
    page = (tmp_path / 'small.html').read_text(encoding='utf-8')
    assert capsys.readouterr().out == f'wrote {tmp_path / "small.html"}\n'
    scripts = [part.split('"')[0] for part in page.split('src="')[1:]]
    (url,) = [src for src in scripts if 'mathjax' in src.lower()]  # one MathJax: this one
    assert url.startswith('file://') and Path(urlparse(url).path).is_file()


def test_the_program_does_not_build_the_grammar_of_a_format_no_notebook_uses(tmp_path):
    # installed with jupyter_server: what jsonschema would import (and compile, 2 s of CPU)
    assert importlib.machinery.PathFinder.find_spec('rfc3987_syntax') is not None
    notebook = small_notebook(tmp_path / 'small.ipynb')
    # -X importtime: a fresh interpreter (not a fork of the tests' zygote) listing its imports
    result = procs.run([sys.executable, '-X', 'importtime', '-m', 'gluon_softmax.export',
                        str(notebook)], what='the export')
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / 'small.html').is_file()
    imported = {line.split('|')[-1].strip() for line in result.stderr.splitlines()
                if line.startswith('import time:')}
    assert 'nbformat' in imported and 'jsonschema' in imported  # the notebook was checked
    # (a module marked absent still gets a line: its failed import)
    assert 'rfc3987_syntax.syntax_helpers' not in imported  # where the grammar is built


@pytest.mark.slow  # seconds each: the full suite only (make test-fast leaves it out)
def test_the_formulas_are_typeset_offline(tmp_path):
    notebook = small_notebook(tmp_path / 'small.ipynb')
    assert export.main([str(notebook), '--out', str(tmp_path / 'page.html')]) == 0
    # CHROMIUM_FLAGS resolve no host name: only what is on this machine can load
    dom = run_chromium(tmp_path, '--virtual-time-budget=20000', '--dump-dom',
                       (tmp_path / 'page.html').as_uri()).stdout
    assert dom.count('type="math/tex') == 2  # both formulas found by MathJax...
    assert dom.count('class="MathJax"') >= 2  # ...and typeset
    assert 'class="MathJax_Error"' not in dom and 'Math Processing Error' not in dom


@pytest.mark.parametrize('content, needle', [
    (None, 'No such file or directory'),
    ('{"cells": 1}', 'not a Jupyter notebook'),
    ('not json', 'not a Jupyter notebook'),
], ids=['missing', 'not-a-notebook', 'not-json'])
def test_a_bad_notebook_is_one_error_line_and_nothing_written(tmp_path, capsys, content,
                                                               needle):
    notebook = tmp_path / 'bad.ipynb'
    if content is not None:
        notebook.write_text(content)
    assert export.main([str(notebook)]) == 2
    err = capsys.readouterr().err
    assert err.count('\n') == 1 and err.startswith(f'error: {notebook}: ') and needle in err
    assert sorted(p.name for p in tmp_path.iterdir()) == (['bad.ipynb'] if content else [])


def test_an_out_that_cannot_be_written_keeps_what_was_there(tmp_path, capsys):
    notebook = small_notebook(tmp_path / 'small.ipynb')
    assert export.main([str(notebook), '--out', str(tmp_path / 'no' / 'page.html')]) == 2
    err = capsys.readouterr().err
    assert err.count('\n') == 1 and f'{tmp_path / "no" / "page.html"}' in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ['small.ipynb']


@pytest.mark.slow  # two kernels: the full suite only
def test_execute_tells_the_kernel_the_notebooks_name_so_a_zh_notebook_runs_in_chinese(
        tmp_path, monkeypatch):
    from ipykernel.kernelspec import install
    install(kernel_name='python3', prefix=str(tmp_path / 'jupyter'))  # this Python as kernel
    monkeypatch.setenv('JUPYTER_PATH', str(tmp_path / 'jupyter' / 'share' / 'jupyter'))
    monkeypatch.delenv('GLUON_SOFTMAX_LANG', raising=False)
    for name in ('small.ipynb', 'small.zh.ipynb'):
        nb = nbformat.v4.new_notebook()
        nb.cells = [nbformat.v4.new_code_cell(
            'from gluon_softmax import language, plots\n'
            "print('language:', language.current(), plots.translate('epoch'))")]
        nbformat.write(nb, str(tmp_path / name))
        assert export.main([str(tmp_path / name), '--execute']) == 0
    assert 'language: en epoch' in (tmp_path / 'small.html').read_text(encoding='utf-8')
    assert 'language: zh 迭代周期' in (tmp_path / 'small.zh.html').read_text(encoding='utf-8')
