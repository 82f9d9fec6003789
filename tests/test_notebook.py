"""The notebook: committed without outputs, a pure client of the package, and it runs."""
import ast
import importlib
import inspect
import json
import os
import pkgutil
import re
import shutil
import sys
import textwrap
from pathlib import Path

import nbformat
import pytest
from plotly.offline import get_plotlyjs

import gluon_softmax
from conftest import RenderedFigures, run_chromium
from procs import LONG_TEST_SECONDS
from gluon_softmax import export
from gluon_softmax.run.settings import Recipe
from gluon_softmax.scale import context

NOTEBOOK = Path(__file__).resolve().parent.parent / 'notebooks' / 'softmax_regression.ipynb'
# the notebook's own quick setting (two epochs, so the live plot is updated once; two-point
# sweeps; three-epoch long runs)
QUICK = {'QUICK': 'True'}
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
    modules = [importlib.import_module(f'gluon_softmax.{info.name}')
               for info in pkgutil.iter_modules(gluon_softmax.__path__)
               if not info.name.startswith('_')]
    assert len(modules) >= 15  # every module of the package, not a chosen few
    for module in modules:
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


def test_first_cell_is_plain_settings_with_the_books_recipe():
    source = code_cells(read_notebook())[0].source
    assert 'environ' not in source and 'GLUON_SOFTMAX' not in source  # no test plumbing
    assert 'import' not in source  # plain values a learner edits
    settings = {}
    exec(source, settings)  # pylint: disable=exec-used
    # the book's recipe: the command line's defaults, which the settings object holds
    book = Recipe()
    assert (settings['NUM_EPOCHS'], settings['BATCH_SIZE'], settings['LR']) == (
        book.epochs, book.batch_size, book.lr) == (10, 256, 0.1)
    assert 'if QUICK:' in source
    quick_cell(source)  # QUICK is a plain assignment there


def quick_cell(source):
    """The first cell in its quick setting."""
    for name, value in QUICK.items():
        source, count = re.subn(rf'^{name} = [^#\n]*', f'{name} = {value}  ', source, flags=re.M)
        assert count == 1, f'{name} is not assigned once in the first cell'
    return source


# what the notebook may import: the chapter (and the package, for its NumPy set-up), MXNet,
# NumPy, Plotly, IPython and the standard library; never the layers around the chapter
CHAPTER_MODULES = {'data', 'scratch', 'concise', 'training', 'plots'}
THIRD_PARTY = {'mxnet', 'numpy', 'plotly', 'IPython'}


def imported_modules(source):
    """Every module an import statement of ``source`` names, dotted (``gluon_softmax.data``)."""
    names = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, 'no relative imports in a notebook'
            if node.module == 'gluon_softmax':  # from gluon_softmax import data, ...
                names += [f'gluon_softmax.{alias.name}' for alias in node.names]
            else:
                names.append(node.module)
    return names


def test_notebook_imports_only_the_chapter():
    sources = [cell.source for cell in code_cells(read_notebook())]
    found = {name for source in sources for name in imported_modules(source)}
    allowed = {'gluon_softmax'} | {f'gluon_softmax.{name}' for name in CHAPTER_MODULES}
    wrong = {name for name in found if not (
        name in allowed or name.split('.')[0] in THIRD_PARTY | set(sys.stdlib_module_names))}
    assert not wrong, f'the notebook imports {sorted(wrong)}'
    assert {'gluon_softmax.data', 'gluon_softmax.training'} <= found
    # and reaches nothing else through the package: gluon_softmax.X only for the chapter
    used = {node.attr for source in sources for node in ast.walk(ast.parse(source))
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
            and node.value.id == 'gluon_softmax'}
    assert used <= CHAPTER_MODULES, f'gluon_softmax.{sorted(used - CHAPTER_MODULES)}'


# what the book writes and the notebook must show from the package's own source
SHOWN = ('scratch.softmax', 'scratch.pick', 'scratch.cross_entropy', 'scratch.log_softmax',
         'scratch.softmax_cross_entropy', 'scratch.SoftmaxRegressionScratch.__call__',
         'scratch.sgd', 'scratch.SGD', 'training.correct_count', 'training.accuracy',
         'training.train_epoch', 'training.evaluate', 'concise.build_net')
BOOK_CONCISE = ('net = nn.Sequential()', 'net.add(nn.Dense(10))',
                'net.initialize(init.Normal(sigma=0.01), ctx=ctx)',
                'loss = gluon.loss.SoftmaxCrossEntropyLoss()',
                "trainer = gluon.Trainer(net.collect_params(), 'sgd', {'learning_rate': LR})")


def shown_objects(sources):
    """The dotted names passed to ``show(...)`` in the cells ``sources``."""
    return {ast.unparse(arg) for source in sources for node in ast.walk(ast.parse(source))
            if isinstance(node, ast.Call) and getattr(node.func, 'id', None) == 'show'
            for arg in node.args}


def test_notebook_shows_the_chapters_code():
    sources = [cell.source for cell in code_cells(read_notebook())]
    assert not set(SHOWN) - shown_objects(sources), 'not shown'
    assert 'def train_epoch' not in ''.join(sources)  # shown from the package, not copied
    by_hand = next(i for i, s in enumerate(sources) if 'training.train_epoch(net, train_iter' in s)
    # one epoch by hand, then train for every epoch
    assert any('training.train(net, train_iter' in s for s in sources[by_hand + 1:])
    # the concise model as the book writes it, in one cell; hybridization only after it
    book = next(i for i, s in enumerate(sources) if BOOK_CONCISE[0] in s)
    assert all(line in sources[book] for line in BOOK_CONCISE)
    # (the helpers after the imports use build_net; the sections before do not)
    start = len(sections(read_notebook())[0])
    assert not any('hybridize' in s or 'build_net' in s for s in sources[start:book])
    assert 'show(concise.build_net' in ''.join(sources[book + 1:])


def plotly_outputs(cell):
    return [out for out in cell.outputs if PLOTLY_MIME in out.get('data', {})]


def sections(nb):
    """``(setup, {heading: code cells})``: the code cells above the first ``## `` heading
    (settings, imports, helpers), and each numbered section's code cells."""
    setup, found, heading = [], {}, None
    for cell in nb.cells:
        if cell.cell_type == 'markdown' and cell.source.startswith('## '):
            heading = cell.source.splitlines()[0][3:]
        elif cell.cell_type == 'code':
            (found.setdefault(heading, []) if heading else setup).append(cell)
    return setup, found


def sectioned_run(nb, languages):
    """A notebook that, for each section, forgets everything (``%reset -f``), runs the setup
    cells, then each of the section's cells twice in a row (as a learner re-runs a cell), the
    first run in ``languages[0]``, the second in ``languages[1]``; the first section's setup
    cells; and ``{heading: (first runs, second runs)}``."""
    setup, found = sections(nb)
    run, passes, setup_runs = nbformat.v4.new_notebook(metadata=nb.metadata), {}, []
    for heading, cells in found.items():
        run.cells.append(nbformat.v4.new_code_cell('%reset -f'))
        run.cells += [nbformat.v4.new_code_cell(cell.source) for cell in setup]
        setup_runs = setup_runs or run.cells[-len(setup):]
        passes[heading] = ([], [])
        for cell in cells:
            for lang, runs in zip(languages, passes[heading]):
                run.cells.append(nbformat.v4.new_code_cell(
                    f'from gluon_softmax import language\nlanguage.set_language({lang!r})'))
                runs.append(nbformat.v4.new_code_cell(cell.source))
                run.cells.append(runs[-1])
    return run, setup_runs, passes


def text_of(cells):
    """Everything ``cells`` printed or displayed as text."""
    return '\n'.join(out.get('text', '') + out.get('data', {}).get('text/plain', '')
                     for cell in cells for out in cell.outputs)


# the numbers a re-run must repeat: losses and accuracies, printed or in a history entry
RESULTS = re.compile(r"(?:loss|acc|accuracy)'?:? +(-?[0-9]+\.[0-9]+)")


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.timeout(2 * LONG_TEST_SECONDS)  # the whole chapter twice on the whole data set
# Debian 13's Python and NumPy 2 (Colab's NumPy); the other legs run the exercise notebooks
@pytest.mark.ci_leg('3.13')
def test_notebook_sections_run_alone_and_cells_again_in_chinese_in_the_quick_setting(
        tmp_path, monkeypatch, real_data_dir):
    """Every section run alone, each of its cells twice: first in English, the notebook's
    outputs; then again in Chinese (the Chinese notebook's code cells are the English ones), the
    Chinese notebook's outputs. The numbers must repeat and every Chinese figure speak Chinese."""
    from ipykernel.kernelspec import install
    from nbclient import NotebookClient
    from gluon_softmax import language

    # A kernel spec that starts this interpreter, found before any other 'python3' spec
    # (JUPYTER_PATH is searched first), so the kernel sees the package of this venv.
    install(kernel_name='python3', prefix=str(tmp_path / 'jupyter'))
    monkeypatch.setenv('JUPYTER_PATH', str(tmp_path / 'jupyter' / 'share' / 'jupyter'))
    nb, nb_zh = read_notebook(), nbformat.read(str(NOTEBOOK_ZH), as_version=4)
    assert [c.source for c in code_cells(nb)] == [c.source for c in code_cells(nb_zh)]
    for notebook in (nb, nb_zh):
        code_cells(notebook)[0].source = quick_cell(code_cells(notebook)[0].source)
    # One kernel: each section right after the settings and imports only (a reset before
    # each), each of its cells twice; the first runs' outputs are the notebook's, exported below.
    run, setup_runs, passes = sectioned_run(nb, languages=('en', 'zh'))
    run.cells.insert(0, nbformat.v4.new_code_cell(
        'import sys\nimport gluon_softmax\nfrom gluon_softmax import language\n'
        'print(sys.prefix, gluon_softmax.__file__, language.current())'))
    # coalesce_streams: a cell's printed text as one output, as Jupyter shows it. The kernel
    # sends what is printed every 0.2 s, so a print whose str() takes longer (an MXNet array
    # waiting for its result on a busy machine) arrived as two outputs, and the text joined
    # with a newline between them missed 'naive -log softmax: [' (seen once in make test).
    client = NotebookClient(run, kernel_name='python3', timeout=300, allow_errors=False,
                            coalesce_streams=True,
                            resources={'metadata': {'path': str(NOTEBOOK.parent)}})
    # as Jupyter starts a kernel for the Chinese notebook: only its name says Chinese
    client.execute(env=language.kernel_env(NOTEBOOK_ZH))  # raises CellExecutionError
    assert not [out for cell in run.cells for out in cell.outputs if out.output_type == 'error']
    assert run.cells[0].outputs[0].text.split() == [
        sys.prefix, gluon_softmax.__file__, 'zh'], 'another Python or package, or not Chinese'
    setup, found = sections(nb)
    setup_zh, found_zh = sections(nb_zh)
    assert len(passes) == len(found) == len(found_zh) >= 9
    for cells in (setup, setup_zh):  # outputs as in any of the sections' runs
        for cell, done in zip(cells, setup_runs):
            cell.outputs = done.outputs
    for (heading, cells), cells_zh in zip(found.items(), found_zh.values()):
        first, second = passes[heading]
        # running a cell again repeats its results: nothing continues training
        assert RESULTS.findall(text_of(first)) == RESULTS.findall(text_of(second)), heading
        # the live curves of a cell's second run start again from epoch 1
        for cell in second:
            if 'LiveCurves(' in cell.source:
                (figure,) = plotly_outputs(cell)
                assert figure['data'][PLOTLY_MIME]['data'][0]['x'] == [1, 2], heading
        # the notebooks' outputs: the first run of each section in English (the first figure
        # of the kernel, in section 1, carries plotly.js for the exported page), the second in
        # Chinese
        for cell, done in zip(cells, first):
            cell.outputs = done.outputs
        for cell, done in zip(cells_zh, second):
            cell.outputs = done.outputs
    # plotly.js is embedded once per kernel, with its first figure: in the English run of that
    # cell, where a kernel of the Chinese notebook's own puts it in the same cell's outputs
    (carrier, index), = [(i, k) for i, cell in enumerate(code_cells(nb))
                         for k, out in enumerate(cell.outputs) if carries_plotlyjs(out)]
    code_cells(nb_zh)[carrier].outputs.insert(index, code_cells(nb)[carrier].outputs[index])
    check_outputs(nb, found)
    screenshots(nb, tmp_path)
    check_chinese(nb_zh, tmp_path)


def carries_plotlyjs(output):
    return get_plotlyjs()[:300] in output.get('data', {}).get('text/html', '')


def check_outputs(nb, found):
    """What the prose says of the outputs, checked on the executed notebook."""
    cells = code_cells(nb)
    first = ''.join(out.get('text', '') for out in cells[0].outputs)
    assert first.startswith('quick setting: 2 epochs, batch size 256, lr 0.1')

    # the live curves: one output per training cell, updated in place to both epochs
    live_cells = [cell for cell in cells if 'LiveCurves(' in cell.source]
    assert len(live_cells) == 2
    for cell in live_cells:
        (figure,) = plotly_outputs(cell)
        assert figure['data'][PLOTLY_MIME]['data'][0]['x'] == [1, 2]

    text = '\n'.join(out.get('text', '') for cell in cells for out in cell.outputs)
    shown = text_of(cells)
    for dotted in SHOWN:  # each shown from its real source
        module, *attributes = dotted.split('.')
        obj = importlib.import_module(f'gluon_softmax.{module}')
        for attribute in attributes:
            obj = getattr(obj, attribute)
        assert textwrap.dedent(inspect.getsource(obj)).strip() in shown, dotted
    # the epoch by hand and train's first epoch, from the same seed: the same line
    epoch_1 = re.findall(r'epoch 1: train loss [0-9.]+, train acc [0-9.]+, test loss .*', text)
    assert len(epoch_1) == 2 and epoch_1[0] == epoch_1[1]
    assert re.search(r'naive -log softmax: \[\s*inf', text)  # the overflow, shown
    if context.num_gpus() == 0:
        assert 'MXNetError: ' in text  # an array on a GPU that is not there
    # "the same seed, so the same numbers": section 2's and 3's runs where later sections
    # train them again
    scratch_2 = section_history_end(found, '2. ', 'history_scratch')
    concise_3 = section_history_end(found, '3. ', 'history_concise')
    assert f'scratch: test acc {scratch_2:.4f}' in text
    assert f'test accuracy: {concise_3:.4f}' in text  # section 7
    assert re.search(rf'book recipe, 2 epochs \(section 3\): {concise_3:.4f}', text)  # section 8
    hybrid = [float(x) for x in re.findall(r'hybridize=\w+ *: one epoch in .* train loss (\S+)',
                                           text)]
    assert len(hybrid) == 2 and abs(hybrid[0] - hybrid[1]) < 1e-4
    assert 'lr 1:' in text and 'batch 1024:' in text  # both sweeps ran their two points
    # the prose's claim about speed is the measured one: the fastest batch size printed is the
    # one with the fewest seconds per epoch printed
    per_epoch = {int(b): float(s) for b, s in re.findall(r'batch (\d+): .*?([0-9.]+) s/epoch', text)}
    fastest = re.search(r'fastest per epoch here: batch (\d+)', text)
    assert len(per_epoch) == 2 and int(fastest.group(1)) == min(per_epoch, key=per_epoch.get)
    # one epoch on two CPU contexts ends where one context does
    difference = re.search(r'largest weight difference after one epoch: (\S+)', text)
    assert difference and float(difference.group(1)) < 1e-6
    assert sum(len(plotly_outputs(cell)) for cell in cells) >= 14  # every figure displayed


def section_history_end(found, prefix, name):
    """The final test accuracy of the history ``name`` that a section's cell displays last."""
    cells = next(cells for heading, cells in found.items() if heading.startswith(prefix))
    cell = next(cell for cell in cells if cell.source.rstrip().endswith(f'{name}[-1]'))
    return float(re.search(r"'test_acc': ([0-9.]+)", text_of([cell])).group(1))


def screenshots(nb, tmp_path):
    """The executed notebook exported as `jupyter nbconvert --to html --execute` does: every
    figure in the page, drawn by its one embedded plotly.js in a browser with no network, and
    every formula typeset."""
    cells = code_cells(nb)
    figures = sum(len(plotly_outputs(cell)) for cell in cells)
    json.dumps(nb)  # the executed notebook is still plain JSON
    assert all('text/html' in out['data'] for cell in cells for out in plotly_outputs(cell))
    page = export_html(nb, tmp_path / 'softmax_regression.html')
    assert page.count(get_plotlyjs()[:300]) == 1  # plotly.js once, not once per figure
    parser = RenderedFigures()
    parser.feed(page)
    assert len(parser.svgs) == figures, 'a figure output without its plotly-graph-div'
    url = (tmp_path / 'softmax_regression.html').as_uri()
    dom = run_chromium(tmp_path, '--virtual-time-budget=20000', '--dump-dom', url).stdout
    parser = RenderedFigures()
    parser.feed(dom)
    assert len(parser.svgs) == figures, f'{len(parser.svgs)} of {figures} figures in the DOM'
    undrawn = [div for div, classes in parser.svgs.items() if 'main-svg' not in classes]
    assert not undrawn, f'{len(undrawn)} of {figures} figures not drawn by plotly.js'
    # and every formula typeset by MathJax (loaded from this machine: no name resolves)
    formulas = dom.count('type="math/tex')
    assert formulas >= 10 and dom.count('class="MathJax"') + dom.count(
        'class="MathJax_Display"') >= formulas, f'{formulas} formulas, not all typeset'
    assert 'class="MathJax_Error"' not in dom and 'Math Processing Error' not in dom
    print(f'{figures} figures in the exported page, all drawn by headless Chromium: {url}')
    live_cell = next(cell for cell in cells if 'LiveCurves(' in cell.source)
    screenshot_cells(tmp_path, nb, first_cell_before(nb, live_cell), tmp_path / 'notebook.png')


def export_html(nb, path):
    """Write the executed notebook as ``python -m gluon_softmax.export`` does (nbconvert's
    default template, MathJax from this machine); the page."""
    page = export.export_html(nb)
    path.write_text(page, encoding='utf-8')
    return page


def first_cell_before(nb, cell):
    """The markdown cell just above ``cell`` when there is one (it says what the cell shows)."""
    i = nb.cells.index(cell)
    return nb.cells[i - 1] if i and nb.cells[i - 1].cell_type == 'markdown' else cell


# the cells a screenshot's page keeps from its first cell down: more than a window shows
SCREENSHOT_CELLS = 5


def screenshot_cells(tmp_path, nb, first, png, size=(1280, 900)):
    """A screenshot of the executed notebook ``nb`` exported as a page, from cell ``first``
    down, kept in GLUON_SOFTMAX_SCREENSHOT_DIR when set (``notebooks/images/notebook.png``)."""
    # A page of ``first`` and the cells just below it, as export_html writes the whole notebook;
    # above it, hidden, only the cell whose output carries plotly.js, which draws the figures.
    # (The whole page took a browser about 7.5 s of CPU, drawing every figure of the chapter.)
    i = nb.cells.index(first)
    carrier = [cell for cell in nb.cells[:i] if cell.cell_type == 'code'
               and any(carries_plotlyjs(out) for out in cell.outputs)]
    part = nbformat.v4.new_notebook(metadata=nb.metadata,
                                    cells=carrier + nb.cells[i:i + SCREENSHOT_CELLS])
    page = export.export_html(part)
    hide = f'<style>.jp-Cell:has(~ #cell-id\\={first.id}) {{ display: none; }}</style>'
    assert f'id="cell-id={first.id}"' in page
    page = page.replace('</head>', hide + '</head>', 1)
    cropped = png.with_suffix('.html')
    cropped.write_text(page, encoding='utf-8')
    run_chromium(tmp_path, '--virtual-time-budget=20000', f'--screenshot={png}',
                 f'--window-size={size[0]},{size[1]}', cropped.as_uri())
    assert png.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    from PIL import Image  # Pillow comes with d2l's matplotlib
    with Image.open(png) as image:  # a figure brings hundreds of colours, a blank page a few
        assert image.size == size and len(image.convert('RGB').getcolors(1 << 20)) > 200
    keep = os.environ.get('GLUON_SOFTMAX_SCREENSHOT_DIR')
    if keep:
        os.makedirs(keep, exist_ok=True)
        shutil.copy(png, os.path.join(keep, png.name))


NOTEBOOK_ZH = NOTEBOOK.with_name('softmax_regression.zh.ipynb')
CJK = re.compile('[\u4e00-\u9fff]')


def figure_layouts(cells):
    """The Plotly layout of every figure the cells displayed (a live figure: its last state)."""
    return [out['data'][PLOTLY_MIME]['layout'] for cell in cells for out in plotly_outputs(cell)]


def check_chinese(nb, tmp_path):
    """The Chinese notebook, with the outputs of its cells' Chinese runs: every figure titled
    in Chinese, the class names Chinese, and its exported page and screenshots."""
    layouts = figure_layouts(code_cells(nb))
    titles = [layout.get('title', {}).get('text', '') for layout in layouts]
    assert len(titles) >= 14
    # every figure has its title in Chinese: those the package draws, and the notebook's own
    # (the costs of section 7, the marks of section 6) through plots.localized
    english = [t for t in titles if not CJK.search(t)]
    assert english == [], english
    costs = layouts[titles.index('每张测试图像的平均代价（按真实类别）')]
    assert costs['xaxis']['title']['text'] == '真实类别'
    marks = {a['text'] for layout in layouts for a in layout.get('annotations', ())}
    assert {'平台期起点', '最佳验证精度'} <= marks, marks
    assert '前 18 张训练图像' in titles and '从零开始实现 softmax 回归' in titles
    images = layouts[titles.index('前 18 张训练图像')]
    names = {a['text'] for a in images['annotations']}
    assert names <= set(gluon_softmax.data.TEXT_LABELS_ZH) and len(names) >= 5  # the class names

    page = export_html(nb, tmp_path / 'softmax_regression.zh.html')
    assert page.count(get_plotlyjs()[:300]) == 1  # its figures are drawn offline too
    assert '前 18 张训练图像' in page and '下面是前 18 张训练图像及其标签' in page
    # screenshots: a Chinese text cell with the figure under it, and the live curves
    text_cell = next(c for c in nb.cells if c.cell_type == 'markdown' and
                     'get_fashion_mnist_labels' in c.source)
    screenshot_cells(tmp_path, nb, text_cell, tmp_path / 'notebook-zh-text-and-images.png')
    live = next(c for c in code_cells(nb) if 'LiveCurves(' in c.source)
    screenshot_cells(tmp_path, nb, first_cell_before(nb, live), tmp_path / 'notebook-zh-curves.png')
