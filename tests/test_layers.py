"""The layers, written once and kept: which module is in which layer, which layer may import
which, and the README's module table, all from :data:`LAYERS` and :data:`MODULES` below.

The check reads the source (``ast``), so it sees every import: at the top, inside functions,
under ``try``, relative ones, and ``importlib.import_module`` / ``__import__`` calls. It also
keeps the style rule on length: no function over 40 lines without a one-line reason
(:data:`LONG_FUNCTIONS`). ``python tests/test_layers.py`` prints the counts (modules per
layer, functions over 40 lines, the largest parameter counts) and the README's table.
"""
import ast
import pathlib
import re
import sys

import pytest

PACKAGE = 'gluon_softmax'
ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGE_DIR = ROOT / PACKAGE
README = ROOT / 'README.md'

# The DAG: layer -> (the layers it may import besides itself, what it is). A layer may import
# its own modules and those of the layers named here, nothing else of the package.
LAYERS = {
    'below all': ((), 'NumPy and Python checks every other module relies on'),
    'chapter': (('below all',), "what a learner reads: the book's chapter, and its data"),
    'run management': (('chapter', 'below all'), 'what makes a run of the chapter a program'),
    'scale-out': (('chapter', 'below all'), 'several devices, worker processes, hosts'),
    'programs': (('run management', 'scale-out', 'chapter', 'below all'),
                 'the commands users type: parse flags, compose the layers'),
    'benchmark': (('programs', 'run management', 'scale-out', 'chapter', 'below all'),
                  '`make bench`: times the chapter, the CLI and its scale-out'),
    'package': (('benchmark', 'programs', 'run management', 'scale-out', 'chapter', 'below all'),
                '`import gluon_softmax`: every public name, imported on first use'),
}

# module (its dotted name under the package; '' is the package itself) -> (layer, what it
# holds). The README's module table is made from this, in this order.
MODULES = {
    'data': ('chapter', 'Fashion-MNIST served to Gluon: `FashionMNIST` (a subclass of '
             "MXNet's); `load_data_fashion_mnist`; the fast `load_arrays_iters`; "
             '`get_fashion_mnist_labels`; `set_seed` (the one seed function); the names of '
             '`data_files` and `idx` re-exported'),
    'data_files': ('chapter', "where Fashion-MNIST's files are (`find_data_dir`), downloading "
                   'them, and `python -m gluon_softmax.data_files [DIR]`, which checks a copy '
                   '(NumPy only: `make` runs it first, without loading MXNet)'),
    'idx': ('chapter', "the IDX format (NumPy only): parse, verify, the files' SHA-256"),
    'loader_workers': ('chapter', "`WorkerDataLoader`: Gluon's `DataLoader` (same batches, same "
                       "order) whose worker processes each have a socket of their own instead "
                       "of a pool's shared, locked queues, so a worker killed at any moment "
                       'cannot deadlock the others or the clean-up; a dead worker raises '
                       '`LoaderWorkerError` at once, a silent one after `timeout` (60 s)'),
    'scratch': ('chapter', '`softmax`, `cross_entropy`, `log_softmax`, `softmax_cross_entropy`, '
                '`sgd`, `SGD`, `SoftmaxRegressionScratch` (`W`, `b` on one device)'),
    'concise': ('chapter', '`build_net` (`nn.Dense(10)`, `init.Normal(0.01)`), `build_loss`, '
                '`build_trainer`'),
    'training': ('chapter', '`accuracy`, `evaluate_accuracy`, `evaluate` (loss and accuracy), '
                 "`train_epoch` (the book's loop), `train` (returns the history), `Epochs` (how "
                 'many epochs, where, a callback, a history to continue, a validation set, '
                 '`epoch_fn=` to swap the epoch), `predict` (labels, predicted classes, probabilities)'),
    'plots': ('chapter', 'Plotly figures: curves, image and prediction grids, confusion matrix, '
              'per-class accuracy, weight templates, loss functions, softmax stability; '
              '`LiveCurves` for notebooks; their words in Chinese when the language is (`ZH`)'),
    'exercises': ('chapter', "checkers for the learner's own solutions "
                  '(`notebooks/exercises.ipynb`), with the chapter as reference'),
    'language': ('chapter', "the language figures and exercise hints speak ('en', 'zh'): "
                 '`$GLUON_SOFTMAX_LANG`, else a `*.zh.ipynb` notebook\'s name, else English'),
    'run': ('run management', 'the subpackage: its docstring only'),
    'run.settings': ('run management', '`Recipe`: every setting of a run and its default: the '
                     "CLI's flags and help, `metrics.json`'s `hyperparameters`, resume checks, "
                     'bench and notebook'),
    'run.cli': ('run management', "the command lines' plumbing: one-line argparse errors "
                '(`Parser`), checked number types'),
    'run.environment': ('run management', 'the environment variables MXNet aborts or hangs on, '
                        'checked before it loads'),
    'run.signals': ('run management', 'every signal handler: `exit_on_signals` (a program\'s '
                    'first moments), `StopOnSignal` and `Interrupted` (a run), `SignalLatch` '
                    "(the launcher), `signal_held` (the benchmark's clean-up)"),
    'run.streams': ('run management', 'standard streams that may be closed or full '
                    '(`guard_streams`)'),
    'run.files': ('run management', 'atomic writes (`atomic_write`, `write_text`, `WriteError`)'),
    'run.resume': ('run management', 'what a resumed run reads back: its recipe (from '
                   '`metrics.json`, or the checkpoint of a run killed before one), its sessions'),
    'run.record': ('run management', "the run's record, kept true as it goes: `metrics.json` "
                   '(status, history), the curves and report pages of a run that ended early'),
    'run.checkpoint': ('run management', 'checkpoints: parameters, optimizer state, random '
                       'states and history in one file'),
    'run.rundir': ('run management', "the run directory (`RunDirectory`: its lock, its files, "
                   '`--overwrite` and `--resume` checks)'),
    'run.watch': ('run management', 'divergence (`LossWatch`, `Diverged`, `WatchedLoss`: the '
                  'loss the loop is given)'),
    'run.progress': ('run management', 'the progress bar over an epoch\'s batches'),
    'run.epoch': ('run management', "`EpochRunner`: the epoch function `training.train` is given, "
                  'wrapped with progress and the divergence check'),
    'run.model': ('run management', '`Model` and `as_model` (what reports and '
                  'checkpoints need from a model)'),
    'run.report': ('run management', 'the self-contained HTML report and curves page'),
    'scale': ('scale-out', 'the subpackage: `KVSTORES`, the names `--kvstore` accepts (no MXNet)'),
    'scale.context': ('scale-out', '`parse_ctx` (checks every GPU with one kernel), `try_gpu`, '
                      '`num_gpus`'),
    'scale.workers': ('scale-out', '`Workers` (rank, sums over workers), `connect` (join the job '
                      'of a kvstore), `ParallelError`'),
    'scale.parallel': ('scale-out', '`DataParallel` (the epoch over devices and workers), '
                       '`split_batch`'),
    'scale.trainer': ('scale-out', "`build_parallel_trainer` (the concise model's Trainer on "
                      'several devices or workers, kvstore checks), `WorkerSumTrainer`'),
    'scale.replicas': ('scale-out', '`ScratchReplicas` + `ReplicaSGD`: the scratch model on '
                       'several devices'),
    'scale.hosts': ('scale-out', "the launcher's hosts: hosts files, placing processes on hosts, "
                    "each host's memory and cores"),
    'scale.processes': ('scale-out', "the launcher's processes: starting them (here or over "
                        'ssh), their exit, stopping them'),
    'scale.launcher': ('scale-out', "the launcher's job: check it fits, start its processes, "
                       'watch them (a failure, a timeout, a signal), stop them all'),
    'train': ('programs', '`python -m gluon_softmax.train` (`gluon-softmax-train`): the CLI'),
    'launch': ('programs', '`python -m gluon_softmax.launch`: a parameter-server job, on loopback '
               'or over a hosts file'),
    'export': ('programs', '`python -m gluon_softmax.export`: a notebook as a page that renders '
               'offline'),
    'compose': ('programs', "what the programs share: `build_model` (a recipe's model on any "
                'devices: run management and scale-out wired together)'),
    '__main__': ('programs', '`python -m gluon_softmax`: the CLI'),
    'bench': ('benchmark', '`python -m gluon_softmax.bench` (`make bench`)'),
    '': ('package', '`import gluon_softmax`: the public names, re-exported lazily; checks a '
         "program's environment and answers Ctrl-C from its first moment"),
    '_compat': ('below all', 'imported first by `import gluon_softmax`: puts back the NumPy '
                'names MXNet 1.9.1 reads and, under NumPy 2, NumPy-1 scalar printing (see '
                '[Supported Pythons](docs/pythons.md))'),
    '_operator_cache': ('below all', 'installed by `import gluon_softmax`: the Python code of '
                        "MXNet's operators compiled once per machine, not once per `import "
                        "mxnet` (a quarter of its CPU)"),
}

# the imports a layer's rule does not allow, each with its one-line reason
EXCEPTIONS = {
    ('data_files', 'run.cli'): '`python -m gluon_softmax.data_files`, in its main() only: the '
                               'one-line argparse errors every program shares',
    ('data_files', 'run.signals'): '`python -m gluon_softmax.data_files`, in its main() only: '
                                   'its Ctrl-C line names the file being verified',
}
# modules whose computed imports (importlib with a name made at run time) are allowed
COMPUTED_IMPORTS = {
    '': 'the lazy re-exports: every module in _EXPORTS is checked by '
        'test_every_export_is_a_module_of_its_layer',
    '_compat': "NumPy's own submodules, below every layer",
}
# the chapter's loop and models use nothing outside MXNet and the standard library
MXNET_ONLY = ('scratch', 'concise', 'training')
DYNAMIC_IMPORTS = {'import_module', '__import__'}

# functions over 40 lines (the style's bound), each with its one-line reason
LONG_FUNCTIONS = {
    'idx.read_stream': 'one pass over a stream, every check of the format in the order the '
                       'bytes come (chapter: not changed here)',
    'bench.report': 'one printed report: its lines in the order they are printed',
    'launch.build_parser': "one add_argument per flag, in --help's order",
    '_compat._restored': 'one table of the NumPy names MXNet reads, each with where it reads '
                         'it',
    'plots.curves_figure': 'one figure, its traces and layout side by side (chapter: not '
                           'changed here)',
    'plots.softmax_stability_figure': 'one figure, its traces and layout side by side '
                                      '(chapter: not changed here)',
}
MAX_LINES = 40


# --- reading the package --------------------------------------------------------------------

def module_name(path):
    """``run.cli`` for ``gluon_softmax/run/cli.py``; ``run`` for its ``__init__.py``."""
    parts = list(path.relative_to(PACKAGE_DIR).with_suffix('').parts)
    if parts[-1] == '__init__':
        parts.pop()
    return '.'.join(parts)


def package_modules():
    """``{module: path}`` of every Python file of the package."""
    return {module_name(path): path for path in sorted(PACKAGE_DIR.rglob('*.py'))}


def exports():
    """``gluon_softmax._EXPORTS`` read from the source (no import): ``{name: module}``."""
    tree = ast.parse((PACKAGE_DIR / '__init__.py').read_text(encoding='utf-8'))
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], 'id', '') == '_EXPORTS':
            table = ast.literal_eval(node.value)
            return {name: module for module, names in table.items() for name in names}
    raise AssertionError('no _EXPORTS in gluon_softmax/__init__.py')


def resolve(dotted, names=(), modules=None):
    """The package modules ``from <dotted> import names`` (or ``import <dotted>``) reaches."""
    modules = package_modules() if modules is None else modules
    inner = dotted[len(PACKAGE) + 1:] if dotted != PACKAGE else ''
    found = []
    for name in names or [None]:
        if name is not None and (f'{inner}.{name}' if inner else name) in modules:
            found.append(f'{inner}.{name}' if inner else name)  # a submodule
        elif name is not None and inner == '' and name in exports():
            found.append(exports()[name])  # a re-export: the module that defines it
        elif inner in modules or inner == '':
            found.append(inner)
        else:
            found.append(inner)  # no such module: refused below, as not in MODULES
    return found


def imports_of(source, module, filename='<source>'):
    """``[(line, target)]``: every import in ``source``, as written in module ``module``.

    A target is a module of the package (its name under the package, '' for the package
    itself), ``'lib:NAME'`` for a top-level module outside it, or ``'computed'``.
    """
    modules = package_modules()
    is_package = module == '' or (PACKAGE_DIR / module.replace('.', '/') / '__init__.py').exists()
    here = [PACKAGE] + ([p for p in module.split('.') if p])
    if not is_package:
        here = here[:-1]  # a module's relative imports start from its package
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                top = alias.name.split('.')[0]
                targets = resolve(alias.name, modules=modules) if top == PACKAGE else [f'lib:{top}']
                found.extend((node.lineno, t) for t in targets)
        elif isinstance(node, ast.ImportFrom):
            names = [alias.name for alias in node.names]
            if node.level:
                base = here[:len(here) - node.level + 1]
                if not base:
                    found.append((node.lineno, 'lib:' + '.' * node.level + (node.module or '')))
                    continue
                dotted = '.'.join(base + ([node.module] if node.module else []))
            else:
                dotted = node.module
            if dotted.split('.')[0] == PACKAGE:
                found.extend((node.lineno, t) for t in resolve(dotted, names, modules))
            else:
                found.append((node.lineno, f"lib:{dotted.split('.')[0]}"))
        elif isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, 'id', None)
            if name in DYNAMIC_IMPORTS:
                arg = node.args[0] if node.args else None
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                    top = arg.value.split('.')[0]
                    targets = (resolve(arg.value, modules=modules) if top == PACKAGE
                               else [f'lib:{top}'])
                    found.extend((node.lineno, t) for t in targets)
                else:
                    found.append((node.lineno, 'computed'))
    return found


def allowed(module, target):
    """Whether ``module`` may import ``target`` (see :func:`imports_of`)."""
    if target == 'computed':
        return module in COMPUTED_IMPORTS
    if target.startswith('lib:'):
        top = target[4:]
        return (module not in MXNET_ONLY or top == 'mxnet'
                or top in sys.stdlib_module_names)
    if target not in MODULES or module not in MODULES:
        return False
    layer, other = MODULES[module][0], MODULES[target][0]
    return (layer == other or other in LAYERS[layer][0]
            or (module, target) in EXCEPTIONS)


def import_problems(source, module, filename='<source>'):
    """``[(line, target)]``: the imports in ``source`` that module ``module`` may not make."""
    return [(line, target) for line, target in imports_of(source, module, filename)
            if not allowed(module, target)]


def functions(tree, prefix=''):
    """``[(qualified name, node)]`` of every function in ``tree``, methods and nested ones too."""
    found = []
    for child in ast.iter_child_nodes(tree):
        if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
            found.append((prefix + child.name, child))
            found.extend(functions(child, f'{prefix}{child.name}.'))
        elif isinstance(child, ast.ClassDef):
            found.extend(functions(child, f'{prefix}{child.name}.'))
        else:
            found.extend(functions(child, prefix))
    return found


def parameter_count(node):
    """The parameters of a function, ``self`` and ``cls`` left out."""
    a = node.args
    names = [x.arg for x in a.posonlyargs + a.args + a.kwonlyargs]
    names += [x.arg for x in (a.vararg, a.kwarg) if x]
    return len([n for n in names if n not in ('self', 'cls')])


def measure(package_dir=PACKAGE_DIR):
    """``{'long': [(lines, 'module.function')], 'params': [(count, 'module.function')]}``."""
    long, params = [], []
    for path in sorted(package_dir.rglob('*.py')):
        parts = list(path.relative_to(package_dir).with_suffix('').parts)
        module = '.'.join(parts[:-1] if parts[-1] == '__init__' else parts)
        for name, node in functions(ast.parse(path.read_text(encoding='utf-8'))):
            lines = node.end_lineno - node.lineno + 1
            if lines > MAX_LINES:
                long.append((lines, f'{module}.{name}'))
            params.append((parameter_count(node), f'{module}.{name}'))
    return {'long': sorted(long, reverse=True), 'params': sorted(params, reverse=True)}


def module_table():
    """The README's module table, made from :data:`MODULES` and :data:`LAYERS`."""
    rows = ['| layer | module | what |', '| --- | --- | --- |']
    for layer in LAYERS:
        for module, (where, what) in MODULES.items():
            if where == layer:
                name = f'{PACKAGE}.{module}' if module else PACKAGE
                rows.append(f'| {layer} | `{name}` | {what} |')
    return '\n'.join(rows)


def dag_lines():
    """The DAG as the README states it: one line per layer."""
    return '\n'.join(f'- {layer} ({what}): imports '
                     + (', '.join(uses) if uses else 'nothing of the package')
                     for layer, (uses, what) in LAYERS.items())


# --- the rule, on the whole package ------------------------------------------------------------

def test_every_module_is_in_exactly_one_layer():
    modules = set(package_modules())
    assert sorted(modules - set(MODULES)) == [], 'modules in no layer: add them to MODULES'
    assert sorted(set(MODULES) - modules) == [], 'MODULES names modules that are gone'
    assert {layer for layer, _ in MODULES.values()} == set(LAYERS)


def test_the_layers_form_a_dag():
    order = []
    remaining = dict((layer, set(uses)) for layer, (uses, _) in LAYERS.items())
    while remaining:
        ready = [layer for layer, uses in remaining.items() if uses <= set(order)]
        assert ready, f'a cycle among {sorted(remaining)}'
        order.extend(ready)
        for layer in ready:
            del remaining[layer]
    assert all(uses <= set(LAYERS) for uses, _ in ((set(u), w) for u, w in LAYERS.values()))


@pytest.mark.parametrize('module', sorted(MODULES))
def test_every_import_follows_the_dag(module):
    path = package_modules()[module]
    problems = import_problems(path.read_text(encoding='utf-8'), module, str(path))
    assert problems == [], '\n'.join(
        f'{path}:{line}: {MODULES[module][0]} module {module or PACKAGE} imports '
        f'{target or PACKAGE}' for line, target in problems)


def test_every_exception_is_used_and_crosses_layers():
    for (module, target), reason in EXCEPTIONS.items():
        assert MODULES[module][0] != MODULES[target][0] and reason
        source = package_modules()[module].read_text(encoding='utf-8')
        assert target in {t for _, t in imports_of(source, module)}, f'{module} -> {target}: unused'
        # inside a function only (the reasons say so): importing the module reaches no other layer
        top = ast.Module([node for node in ast.parse(source).body
                          if isinstance(node, (ast.Import, ast.ImportFrom))], [])
        assert target not in {t for _, t in imports_of(ast.unparse(top), module)}


def test_run_management_and_scale_out_do_not_import_each_other():
    """The rule DESIGN.md names, stated on its own: the programs wire the two."""
    assert 'scale-out' not in LAYERS['run management'][0]
    assert 'run management' not in LAYERS['scale-out'][0]


def test_every_export_is_a_module_of_its_layer():
    import gluon_softmax
    for name, module in exports().items():
        assert module in MODULES, f'{name}: {module} is in no layer'
        assert hasattr(gluon_softmax, name)


def test_the_readme_module_table_is_made_from_the_layers():
    text = README.read_text(encoding='utf-8')
    assert module_table() in text, ('README.md: replace the module table with the output of '
                                    '`python tests/test_layers.py --table`')
    assert dag_lines() in text, ('README.md: replace the layer list with the output of '
                                 '`python tests/test_layers.py --table`')


def test_no_function_over_40_lines_without_a_reason():
    long = {name for _, name in measure()['long']}
    assert sorted(long - set(LONG_FUNCTIONS)) == [], 'give a one-line reason, or split it'
    assert sorted(set(LONG_FUNCTIONS) - long) == [], 'no longer over 40 lines: drop the reason'


def test_setup_cfg_installs_every_subpackage():
    """``packages =`` lists each package by name: a subpackage left out is not installed."""
    text = (ROOT / 'setup.cfg').read_text(encoding='utf-8')
    listed = {name.strip() for name in re.search(r'^packages = (.*)$', text, re.M)[1].split(',')}
    found = {'.'.join((PACKAGE, *path.parent.relative_to(PACKAGE_DIR).parts))
             for path in PACKAGE_DIR.rglob('__init__.py')}
    assert listed == found


def test_training_train_has_at_most_6_parameters():
    counts = dict((name, count) for count, name in measure()['params'])
    assert counts['training.train'] <= 6


# --- the checker catches what it must --------------------------------------------------------

@pytest.mark.parametrize('target', ['scale.parallel', 'run.rundir', 'run.settings', 'train',
                                    'bench', 'compose', 'run.cli'])
@pytest.mark.parametrize('form', [
    'import gluon_softmax.{m}',
    'import gluon_softmax.{m} as alias',
    'from {pfx} import {leaf}',
    'from {pfx} import {leaf} as alias',
    'from gluon_softmax.{m} import x',
    'from {rel} import {leaf}',
    'from .{m} import x',
    'def f():\n    import gluon_softmax.{m}',
    'def f():\n    from {rel} import {leaf}',
    'class A:\n    def f(self):\n        from gluon_softmax.{m} import x',
    'try:\n    pass\nexcept ImportError:\n    from .{m} import x',
    "import importlib\nimportlib.import_module('gluon_softmax.{m}')",
    "__import__('gluon_softmax.{m}')",
])
def test_an_outer_import_in_the_chapter_in_any_form_is_caught(form, target):
    parent, _, leaf = target.rpartition('.')
    source = form.format(m=target, leaf=leaf, pfx=f'gluon_softmax.{parent}' if parent else
                         'gluon_softmax', rel=f'.{parent}' if parent else '.')
    assert import_problems(source, 'training') == [(source.count('\n') + 1, target)]


@pytest.mark.parametrize('module, source, target', [
    ('scale.parallel', 'from gluon_softmax.run.watch import LossWatch', 'run.watch'),
    ('scale.workers', 'from gluon_softmax.run.settings import Recipe', 'run.settings'),
    ('run.model', 'from gluon_softmax.scale import parallel', 'scale.parallel'),
    ('run.report', 'from ..scale.workers import Workers', 'scale.workers'),
    ('run.epoch', 'from gluon_softmax import DataParallel', 'scale.parallel'),  # a re-export
    ('run.signals', 'from gluon_softmax import train', 'train'),
    ('scale.context', 'import gluon_softmax', ''),  # the package reaches every layer
    ('compose', 'from gluon_softmax import bench', 'bench'),
    ('training', 'from gluon_softmax import Recipe', 'run.settings'),
    ('training', 'from gluon_softmax import nonexistent', ''),  # a name of the package itself
    # its exceptions are named, and are data_files' alone
    ('data_files', 'from gluon_softmax.run import rundir', 'run.rundir'),
    ('data', 'def main():\n    from gluon_softmax.run.cli import Parser', 'run.cli'),
])
def test_a_forbidden_import_between_layers_is_caught(module, source, target):
    assert [found for _, found in import_problems(source, module)] == [target]


@pytest.mark.parametrize('source, what', [
    ('import numpy as onp', 'lib:numpy'),
    ('import numpy.random', 'lib:numpy'),
    ('from numpy import random', 'lib:numpy'),
    ('import plotly.graph_objects as go', 'lib:plotly'),
    ('from d2l import mxnet as d2l', 'lib:d2l'),
    ("__import__(name)", 'computed'),
    ("import importlib\nimportlib.import_module(f'gluon_softmax.{x}')", 'computed'),
])
def test_the_chapters_loop_uses_only_mxnet_and_the_standard_library(source, what):
    assert [found for _, found in import_problems(source, 'training')] == [what]
    assert import_problems(source.replace('computed', ''), 'plots') == (
        [] if what.startswith('lib:') else [(source.count('\n') + 1, what)])


@pytest.mark.parametrize('module, source', [
    ('training', 'import mxnet as mx\nfrom mxnet import autograd, gluon, np, npx'),
    ('training', 'import time\nfrom collections import OrderedDict'),
    ('training', 'from gluon_softmax import data, plots, scratch, concise, training'),
    ('training', 'from gluon_softmax.data import ArrayLoader\nfrom . import scratch'),
    ('training', 'from gluon_softmax import softmax, train_epoch, ArrayLoader'),  # re-exports
    ('data_files', 'def main():\n    from gluon_softmax.run.cli import Parser'),  # an exception
    ('run.report', 'from .. import plots\nfrom . import files\nfrom .model import as_model'),
    ('scale.parallel', 'from gluon_softmax.training import correct_count\nfrom . import workers'),
    ('compose', 'from gluon_softmax.run.model import Model\n'
                'from gluon_softmax.scale import trainer'),
    ('bench', 'from gluon_softmax.compose import build_model'),
    ('', 'from .run.signals import exit_on_signals'),
])
def test_what_the_dag_allows_passes(module, source):
    assert import_problems(source, module) == []


def test_the_walk_sees_the_real_imports():
    """The package passes because its imports are allowed, not because the walk misses them."""
    seen = {target for module, path in package_modules().items()
            for _, target in imports_of(path.read_text(encoding='utf-8'), module)}
    assert {'lib:mxnet', 'training', 'run.signals', 'scale.parallel', 'compose'} <= seen
    tampered = package_modules()['training'].read_text(encoding='utf-8') + (
        '\n\ndef helper():\n    from .scale.parallel import DataParallel\n')
    assert [t for _, t in import_problems(tampered, 'training')] == ['scale.parallel']


def test_the_length_rule_sees_a_long_function(tmp_path):
    source = 'def f():\n' + '    x = 1\n' * 40 + '\n\ndef g(a, b):\n    pass\n'
    (tmp_path / 'm.py').write_text(source)
    found = measure(tmp_path)
    assert found['long'] == [(41, 'm.f')] and found['params'][0] == (2, 'm.g')


def report():
    """The counts the issue asks for, and the table for the README."""
    counts = {}
    for layer, _ in MODULES.values():
        counts[layer] = counts.get(layer, 0) + 1
    found = measure()
    print('modules per layer:', ', '.join(f'{layer} {counts.get(layer, 0)}' for layer in LAYERS))
    print(f'functions over {MAX_LINES} lines: {len(found["long"])}')
    for lines, name in found['long']:
        print(f'  {lines:4d} {name}: {LONG_FUNCTIONS.get(name, "NO REASON")}')
    print('largest parameter counts:', ', '.join(f'{name} {count}'
                                                for count, name in found['params'][:5]))


if __name__ == '__main__':
    if '--table' in sys.argv:
        print(dag_lines() + '\n\n' + module_table())
    else:
        report()
