"""The layers stay layers: the chapter's modules import only each other, ``data``, ``plots``,
MXNet and the standard library, never the scale-out, run-management or CLI modules around them.

The check reads the source (``ast``), so it sees every import: at the top, inside functions,
under ``try``, relative ones, and ``importlib.import_module`` / ``__import__`` calls.
"""
import ast
import pathlib
import sys

import pytest

import gluon_softmax

PACKAGE = 'gluon_softmax'
PACKAGE_DIR = pathlib.Path(gluon_softmax.__file__).parent
CHAPTER = ('scratch', 'concise', 'training')
# what the chapter may use of the package: itself, the data, plotting and language modules, the
# NumPy-only IDX reader and the DataLoader worker processes under the data module
ALLOWED_MODULES = {*CHAPTER, 'data', 'plots', 'idx', 'loader_workers', 'language'}
ALLOWED_TOP_LEVEL = {'mxnet'} | set(sys.stdlib_module_names)
# the layers around the chapter, which it must never import (a new module is refused too:
# the check allows by name, it does not forbid by name)
OUTER = ('parallel', 'models', 'settings', 'runs', 'checkpoint', 'report', 'train', 'launch',
         'bench', 'cli', 'context')
DYNAMIC_IMPORTS = {'import_module', '__import__'}


def _package_target(dotted):
    """``(ok, what)`` for ``gluon_softmax.<dotted>``: allowed only for the chapter's modules."""
    if not dotted:
        return False, PACKAGE  # the package itself reaches every module through its exports
    module = dotted.split('.')[0]
    return module in ALLOWED_MODULES, f'{PACKAGE}.{module}'


def _from_package(names):
    """The problems of ``from gluon_softmax import names`` (modules, or names it re-exports)."""
    problems = []
    for name in names:
        # a re-exported name (gluon_softmax.Recipe) comes from the module that defines it
        module = getattr(gluon_softmax, '_WHERE', {}).get(name, name)
        ok, what = _package_target(module)
        if not ok:
            problems.append(what)
    return problems


def import_problems(source, filename='<source>', third_party=False):
    """``[(line, what)]``: every import in ``source`` the chapter may not make.

    ``third_party`` allows any module outside the package (for ``data`` and ``plots``,
    which use NumPy and Plotly but must not reach the outer layers either).
    """
    problems = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                top, _, rest = alias.name.partition('.')
                if top == PACKAGE:
                    ok, what = _package_target(rest)
                else:
                    ok, what = third_party or top in ALLOWED_TOP_LEVEL, top
                if not ok:
                    problems.append((node.lineno, what))
        elif isinstance(node, ast.ImportFrom):
            names = [alias.name for alias in node.names]
            if node.level > 1:  # above the package: whatever it is, it is not the chapter
                problems.append((node.lineno, '.' * node.level + (node.module or '')))
                continue
            if node.level == 1 or (node.module or '').split('.')[0] == PACKAGE:
                # relative to the package, or absolute inside it
                inner = (node.module or '') if node.level == 1 else node.module[len(PACKAGE) + 1:]
                if inner:
                    ok, what = _package_target(inner)
                    found = [] if ok else [what]
                else:
                    found = _from_package(names)
                problems.extend((node.lineno, what) for what in found)
            elif not third_party and node.module.split('.')[0] not in ALLOWED_TOP_LEVEL:
                problems.append((node.lineno, node.module.split('.')[0]))
        elif isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, 'id', None)
            if name in DYNAMIC_IMPORTS:
                # a computed module name cannot be checked: the chapter has no need for one
                problems.append((node.lineno, f'{name}(...)'))
    return problems


@pytest.mark.parametrize('module', CHAPTER)
def test_the_chapter_imports_only_itself_data_plots_mxnet_and_the_standard_library(module):
    path = PACKAGE_DIR / f'{module}.py'
    problems = import_problems(path.read_text(encoding='utf-8'), str(path))
    assert problems == [], '\n'.join(f'{path}:{line}: imports {what}' for line, what in problems)


@pytest.mark.parametrize('module', ['data', 'plots', 'loader_workers', 'exercises'])
def test_what_the_chapter_may_import_does_not_reach_the_outer_layers(module):
    """``data`` and ``plots`` may use NumPy and Plotly, but importing them pulls in no outer
    layer: otherwise the chapter would, through them."""
    path = PACKAGE_DIR / f'{module}.py'
    problems = import_problems(path.read_text(encoding='utf-8'), str(path), third_party=True)
    if module == 'data':
        # `python -m gluon_softmax.data` uses the shared one-line argparse errors; cli.py is
        # a leaf that imports only the standard library
        problems = [(line, what) for line, what in problems if what != f'{PACKAGE}.cli']
    assert problems == [], '\n'.join(f'{path}:{line}: imports {what}' for line, what in problems)


def test_an_outer_import_added_to_the_real_loop_is_caught():
    source = (PACKAGE_DIR / 'training.py').read_text(encoding='utf-8')
    assert import_problems(source) == []
    tampered = source + '\n\ndef helper():\n    from .parallel import DataParallel\n'
    assert [what for _, what in import_problems(tampered)] == [f'{PACKAGE}.parallel']


@pytest.mark.parametrize('module', CHAPTER)
def test_the_walk_sees_the_chapters_real_imports(module):
    """The chapter's imports pass because they are allowed, not because the walk misses them."""
    tree = ast.parse((PACKAGE_DIR / f'{module}.py').read_text(encoding='utf-8'))
    seen = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import)
            for alias in node.names}
    seen |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert 'mxnet' in seen


def test_every_outer_module_exists_and_would_be_refused():
    modules = {path.stem for path in PACKAGE_DIR.glob('*.py')} - {'__init__', '__main__'}
    assert set(OUTER) <= modules, 'a module named here is gone: update OUTER'
    # every module outside the allowed set is refused, named in OUTER or not
    for module in modules - ALLOWED_MODULES:
        assert import_problems(f'from {PACKAGE} import {module}') == [(1, f'{PACKAGE}.{module}')]


# --- the checker catches what it must -------------------------------------------------------

@pytest.mark.parametrize('module', OUTER)
@pytest.mark.parametrize('form', [
    'import gluon_softmax.{m}',
    'import gluon_softmax.{m} as alias',
    'from gluon_softmax import {m}',
    'from gluon_softmax import data, {m}',
    'from gluon_softmax.{m} import x',
    'from . import {m}',
    'from .{m} import x',
    'def f():\n    import gluon_softmax.{m}',
    'def f():\n    from . import {m}',
    'class A:\n    def f(self):\n        from gluon_softmax.{m} import x',
    'try:\n    pass\nexcept ImportError:\n    from .{m} import x',
])
def test_an_outer_import_in_any_form_is_caught(form, module):
    source = form.format(m=module)
    assert import_problems(source) == [(source.count('\n') + 1, f'{PACKAGE}.{module}')]


@pytest.mark.parametrize('source, line', [
    ('from gluon_softmax.parallel import x', 1),
    ('from . import runs', 1),
    ('import mxnet\n\n\ndef train():\n    from gluon_softmax import models\n', 5),
])
def test_the_briefs_examples_are_caught(source, line):
    assert [found for found, _ in import_problems(source)] == [line]


@pytest.mark.parametrize('source, what', [
    ('import gluon_softmax', PACKAGE),  # the package reaches every layer through its exports
    ('from gluon_softmax import Recipe', f'{PACKAGE}.settings'),  # a re-export of an outer one
    ('from gluon_softmax import DataParallel', f'{PACKAGE}.parallel'),
    ('from gluon_softmax import nonexistent', f'{PACKAGE}.nonexistent'),
    ('from .. import x', '..'),
    ('from ..other import x', '..other'),
    ('import numpy as onp', 'numpy'),
    ('import numpy.random', 'numpy'),
    ('from numpy import random', 'numpy'),
    ('import plotly.graph_objects as go', 'plotly'),
    ('from d2l import mxnet as d2l', 'd2l'),
    ('import torch', 'torch'),
    ("import importlib\nimportlib.import_module('gluon_softmax.parallel')", 'import_module(...)'),
    ("__import__('gluon_softmax.runs')", '__import__(...)'),
])
def test_other_forbidden_imports_are_caught(source, what):
    assert [found for _, found in import_problems(source)] == [what]


@pytest.mark.parametrize('source', [
    'import mxnet as mx',
    'import mxnet.gluon.nn',
    'from mxnet import autograd, gluon, np, npx',
    'from mxnet.gluon import nn',
    'import time\nimport math\nfrom collections import OrderedDict',
    'from __future__ import annotations',
    'from gluon_softmax import data, plots, scratch, concise, training',
    'from gluon_softmax.training import correct_count',
    'from gluon_softmax.data import ArrayLoader',
    'from . import scratch',
    'from .data import ArrayLoader',
    'import gluon_softmax.plots',
    'from gluon_softmax import softmax, train_epoch, ArrayLoader',  # re-exports of the chapter
    'def f():\n    from . import training',
])
def test_the_chapters_own_imports_pass(source):
    assert import_problems(source) == []


def test_third_party_allows_other_libraries_but_not_the_outer_layers():
    source = 'import numpy as onp\nimport plotly.graph_objects as go\nfrom .runs import x\n'
    assert import_problems(source, third_party=True) == [(3, f'{PACKAGE}.runs')]
