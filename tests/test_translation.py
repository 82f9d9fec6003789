"""The Chinese notebooks: generated from the English ones and ``notebooks/i18n/zh.json``, in step
with them (the sync tests, no kernel), and they run in Chinese (slow: a kernel each).

The rule that keeps one source: a Chinese notebook ``X.zh.ipynb`` has the cells of ``X.ipynb``
in the same order with the same ids, every code cell equal character for character, every
markdown cell the translation of the current English text. Nothing in the code says which
language: the kernel learns it from the notebook's name (``gluon_softmax.language``).
"""
import ast
import importlib.util
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import nbformat
import pytest

from gluon_softmax import language, plots

NOTEBOOKS = Path(__file__).resolve().parent.parent / 'notebooks'


def load_generator():
    """``notebooks/translate.py`` as a module."""
    spec = importlib.util.spec_from_file_location('translate', NOTEBOOKS / 'translate.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


GENERATOR = load_generator()
PAIRS = [(name, GENERATOR.zh_name(name)) for name in GENERATOR.SOURCES]


def read(name, folder=NOTEBOOKS):
    return nbformat.read(str(folder / name), as_version=4)


def untranslated(problems):
    """The generator's missing and stale cells as a message: notebook, cell id, English text."""
    return '\n'.join(f'{status} translation of cell {cell.id}; its English text:\n{cell.source}'
                     for status, cell in problems)


@pytest.mark.parametrize('english, chinese', PAIRS)
def test_code_cells_are_the_same_in_both_languages(english, chinese):
    assert_same_code(english, chinese)


def assert_same_code(english, chinese, folder=NOTEBOOKS):
    """The sync rule for code: the same cells (ids, kinds, order), code equal character for
    character, no outputs."""
    en, zh = read(english, folder), read(chinese, folder)
    assert [(c.id, c.cell_type) for c in zh.cells] == [(c.id, c.cell_type) for c in en.cells], \
        f'{chinese} has other cells than {english}: run python notebooks/translate.py'
    for en_cell, zh_cell in zip(en.cells, zh.cells):
        if en_cell.cell_type == 'code':
            assert zh_cell.source == en_cell.source, (
                f'code cell {en_cell.id} differs between {english} and {chinese}:\n'
                f'{en_cell.source}\n---\n{zh_cell.source}')
            assert zh_cell.outputs == [] and zh_cell.execution_count is None


@pytest.mark.parametrize('english', GENERATOR.SOURCES)
def test_every_english_markdown_cell_has_a_current_translation(english):
    _, problems = GENERATOR.build(english, GENERATOR.load_translations())
    assert not problems, \
        f'{english}:\n{untranslated(problems)}\n(python notebooks/translate.py --todo)'


@pytest.mark.parametrize('english, chinese', PAIRS)
def test_the_committed_chinese_notebook_is_what_the_generator_writes(english, chinese):
    zh, _ = GENERATOR.build(english, GENERATOR.load_translations())
    committed = (NOTEBOOKS / chinese).read_text(encoding='utf-8')
    assert committed == nbformat.writes(zh) + '\n', \
        f'{chinese} was edited by hand or is out of date: run python notebooks/translate.py'
    for cell in read(chinese).cells:
        if cell.cell_type == 'markdown':  # every markdown cell is Chinese, not a copy
            assert re.search('[\u4e00-\u9fff]', cell.source), cell.id
    assert GENERATOR.main(['--check']) == 0


WIDE = '[\u3000-\uffff]'  # CJK characters and punctuation: no space between them


def test_no_line_break_between_two_chinese_characters():
    """Markdown shows a line break inside a paragraph as a space, which Chinese does not have:
    a Chinese paragraph is one line (a break next to Latin text or code is fine)."""
    broken = [(name, cell_id, line) for name, cells in GENERATOR.load_translations().items()
              for cell_id, entry in cells.items() for line, following in
              zip(entry['zh'], entry['zh'][1:])
              if re.search(WIDE + '\n$', line) and re.match('\\s*' + WIDE, following)]
    assert broken == [], broken[:3]


@pytest.mark.parametrize('english, chinese', PAIRS)
def test_the_language_comes_from_the_name_not_the_code(english, chinese):
    assert language.notebook_language(NOTEBOOKS / chinese) == 'zh'
    assert language.notebook_language(NOTEBOOKS / english) == 'en'
    for cell in read(english).cells:
        if cell.cell_type == 'code':
            assert 'set_language' not in cell.source and language.ENV_VAR not in cell.source


def figure_titles(nb):
    """Every ``title=`` the notebook's code passes, as a pattern (``{}`` per f-string field)."""
    titles = []
    for cell in nb.cells:
        if cell.cell_type != 'code':
            continue
        for node in ast.walk(ast.parse(cell.source)):
            if isinstance(node, ast.keyword) and node.arg == 'title':
                value = node.value
                if isinstance(value, ast.Constant):
                    titles.append(value.value)
                elif isinstance(value, ast.JoinedStr):
                    titles.append(''.join(part.value if isinstance(part, ast.Constant) else '{}'
                                          for part in value.values))
    return titles


def test_every_figure_title_the_walk_through_passes_has_a_chinese_text():
    titles = figure_titles(read('softmax_regression.ipynb'))
    assert len(titles) >= 10
    # a title drawn by the package in a Chinese notebook is translated (plots.ZH); the one figure
    # the notebook builds with Plotly itself is not the package's (see the README)
    samples = {t: t.replace('{}', '7') for t in titles}  # a pattern filled in, as drawn
    missing = [t for t, drawn in samples.items() if plots.translate(drawn, 'zh') == drawn
               and t != 'Average cost per test image, by true class']
    assert missing == [], f'add these titles to gluon_softmax/plots.py ZH: {missing}'


# ----------------------------------------------------------------------------- the checks fail

@pytest.fixture
def copy_of_notebooks(tmp_path, monkeypatch):
    """The English notebooks and zh.json copied into ``tmp_path``, the generator pointed there."""
    for name in GENERATOR.SOURCES:
        shutil.copy(NOTEBOOKS / name, tmp_path / name)
    (tmp_path / 'i18n').mkdir()
    shutil.copy(GENERATOR.TRANSLATIONS, tmp_path / 'i18n' / 'zh.json')
    monkeypatch.setattr(GENERATOR, 'HERE', tmp_path)
    monkeypatch.setattr(GENERATOR, 'TRANSLATIONS', tmp_path / 'i18n' / 'zh.json')
    return tmp_path


def edit_english(folder, name, edit):
    """Apply ``edit(nb)`` to the English notebook ``name`` in ``folder``; the cell it returns."""
    nb = read(name, folder)
    cell = edit(nb)
    nbformat.write(nb, str(folder / name))
    return cell


def test_an_edited_english_cell_is_stale_and_named_with_its_text(copy_of_notebooks, capsys):
    def edit(nb):
        cell = next(c for c in nb.cells if c.cell_type == 'markdown' and c.id == 'b0328b8c')
        cell.source = cell.source.replace('harder to tell\napart', 'much harder to tell\napart')
        return cell
    cell = edit_english(copy_of_notebooks, 'softmax_regression.ipynb', edit)
    _, problems = GENERATOR.build('softmax_regression.ipynb', GENERATOR.load_translations())
    assert [(status, c.id) for status, c in problems] == [('stale', 'b0328b8c')]
    assert GENERATOR.main(['--check']) == 1
    err = capsys.readouterr().err
    assert 'softmax_regression.ipynb cell b0328b8c: stale translation' in err
    assert 'much harder to tell' in err  # the English text to translate again is shown
    assert GENERATOR.main([]) == 1  # writes the notebooks, the English text under a note
    written = read('softmax_regression.zh.ipynb', copy_of_notebooks)
    zh_cell = next(c for c in written.cells if c.id == cell.id)
    assert zh_cell.source == GENERATOR.UNTRANSLATED + cell.source


def test_a_new_english_cell_is_missing_and_a_todo_entry_fixes_it(copy_of_notebooks, capsys):
    def edit(nb):
        cell = nbformat.v4.new_markdown_cell('A new paragraph.')
        cell.id = 'new00001'
        nb.cells.insert(3, cell)
        return cell
    edit_english(copy_of_notebooks, 'softmax_regression.ipynb', edit)
    assert GENERATOR.main(['--todo']) == 1
    out, err = capsys.readouterr()
    assert 'cell new00001: missing translation' in err and 'A new paragraph.' in err
    todo = json.loads(out)
    entry = todo['softmax_regression.ipynb']['new00001']
    entry['zh'] = ['新的一段。']
    table = json.loads(GENERATOR.TRANSLATIONS.read_text(encoding='utf-8'))
    table['softmax_regression.ipynb']['new00001'] = entry
    GENERATOR.TRANSLATIONS.write_text(json.dumps(table, ensure_ascii=False), encoding='utf-8')
    assert GENERATOR.main([]) == 0
    assert GENERATOR.main(['--check']) == 0
    assert read('softmax_regression.zh.ipynb', copy_of_notebooks).cells[3].source == '新的一段。'


def test_a_code_cell_edited_in_the_chinese_notebook_is_caught(copy_of_notebooks):
    assert GENERATOR.main([]) == 0
    zh = read('exercises.zh.ipynb', copy_of_notebooks)
    code = next(c for c in zh.cells if c.cell_type == 'code')
    code.source += '\nLANG = "zh"'
    nbformat.write(zh, str(copy_of_notebooks / 'exercises.zh.ipynb'))
    with pytest.raises(AssertionError, match=f'code cell {code.id} differs'):
        assert_same_code('exercises.ipynb', 'exercises.zh.ipynb', copy_of_notebooks)
    assert GENERATOR.main(['--check']) == 1


# ----------------------------------------------------------------------------- fonts

ROW = 80  # pixels per line of the test page


def rendered_lines(tmp_path, lines):
    """Each of ``lines`` in large sans-serif as headless Chromium draws it (one page, one run):
    the pixels of each line's band of the screenshot."""
    from PIL import Image
    from conftest import run_chromium
    rows = ''.join(f'<div style="height:{ROW}px; font: 48px sans-serif">{text}</div>'
                   for text in lines)
    page, png = tmp_path / 'lines.html', tmp_path / 'lines.png'
    page.write_text(f'<html><body style="margin:0">{rows}</body></html>', encoding='utf-8')
    run_chromium(tmp_path, f'--screenshot={png}', f'--window-size=400,{ROW * len(lines)}',
                 page.as_uri())
    with Image.open(png) as image:
        rgb = image.convert('RGB')
        return [rgb.crop((0, i * ROW, 400, (i + 1) * ROW)).tobytes() for i in range(len(lines))]


def test_chinese_renders_in_chromium_with_a_cjk_font(tmp_path):
    """Without a CJK font every character is the same empty box (tofu), as the characters no
    font has (private use) are: two different Chinese words must differ from both and from each
    other. The font is Debian's fonts-noto-cjk (.ci/run and make test install it)."""
    fonts = subprocess.run(['fc-list', ':lang=zh'], capture_output=True, text=True,
                           check=False).stdout if shutil.which('fc-list') else ''
    if not fonts and os.environ.get('GLUON_SOFTMAX_REQUIRE_BROWSER') != '1':
        pytest.skip('no CJK font (sudo apt-get install fonts-noto-cjk): Chinese shows as boxes')
    words = rendered_lines(tmp_path, ['交叉熵损失', '混淆矩阵图', '\ue000' * 5])
    assert words[0] != words[2] and words[1] != words[2], 'Chinese drawn as boxes: no CJK font'
    assert words[0] != words[1]
