"""The package's language: where it comes from (the rule the Chinese notebooks rely on) and what
it changes in the figures (English output untouched)."""
import numpy as onp
import pytest

from gluon_softmax import data, language, plots


@pytest.fixture(autouse=True)
def english_after(monkeypatch):
    monkeypatch.setattr(language, 'LANGUAGE', 'en')  # whatever a test sets, restored after it


@pytest.mark.parametrize('environ, expected', [
    ({}, 'en'),
    ({'JPY_SESSION_NAME': 'notebooks/softmax_regression.zh.ipynb'}, 'zh'),
    ({'JPY_SESSION_NAME': '/home/me/notebooks/exercises.zh.ipynb'}, 'zh'),
    ({'JPY_SESSION_NAME': 'notebooks/softmax_regression.ipynb'}, 'en'),
    ({'JPY_SESSION_NAME': 'notebooks/zh.ipynb.bak'}, 'en'),
    ({'GLUON_SOFTMAX_LANG': 'en', 'JPY_SESSION_NAME': 'a.zh.ipynb'}, 'en'),  # the variable wins
    ({'GLUON_SOFTMAX_LANG': 'zh'}, 'zh'),
])
def test_the_language_comes_from_the_variable_else_the_notebooks_name(environ, expected):
    assert language.from_environment(environ) == expected


def test_an_unknown_language_is_refused():
    with pytest.raises(ValueError, match="GLUON_SOFTMAX_LANG='fr'"):
        language.from_environment({'GLUON_SOFTMAX_LANG': 'fr'})
    with pytest.raises(ValueError, match="no language 'fr'"):
        language.set_language('fr')


def test_a_kernel_for_a_notebook_gets_its_path_as_jupyter_server_gives_it():
    env = language.kernel_env('notebooks/exercises.zh.ipynb', {'PATH': '/bin'})
    assert env == {'PATH': '/bin', 'JPY_SESSION_NAME': 'notebooks/exercises.zh.ipynb'}
    assert language.from_environment(env) == 'zh'


def history():
    return {'scratch': [{'epoch': 1, 'train_loss': 0.8, 'test_acc': 0.7}],
            'lr 0.1': [{'epoch': 1, 'train_loss': 0.6, 'test_acc': 0.8}]}


def figure_words(fig):
    """Every word a reader sees: title, axis titles, annotations, legend, category names."""
    layout = fig.layout
    words = [layout.title.text] + [a.text for a in layout.annotations]
    words += [layout[k].title.text for k in layout if k.startswith(('xaxis', 'yaxis'))]
    for trace in fig.data:
        words.append(trace.name)
        x = getattr(trace, 'x', None)
        words += [v for v in (() if x is None else x) if isinstance(v, str)]
    return [w for w in words if w]


def test_english_figures_are_exactly_what_they_were():
    before = plots.curves_figure(history(), title='From scratch vs concise').to_json()
    language.set_language('zh')
    plots.curves_figure(history(), title='From scratch vs concise')
    language.set_language('en')
    assert plots.curves_figure(history(), title='From scratch vs concise').to_json() == before


def test_chinese_figures_translate_titles_axes_legends_and_class_names():
    language.set_language('zh')
    fig = plots.curves_figure(history(), title='From scratch vs concise')
    assert fig.layout.title.text == '从零实现与简洁实现'
    assert '从零实现 训练损失' in [t.name for t in fig.data]  # run name and curve, each translated
    assert '学习率 0.1 测试精度' in [t.name for t in fig.data]
    assert fig.layout.xaxis.title.text == '迭代周期'
    y, y_hat = onp.array([0, 9]), onp.array([6, 9])
    fig = plots.predictions_figure(onp.zeros((2, 28, 28)), y, y_hat, data.TEXT_LABELS)
    assert [a.text for a in fig.layout.annotations] == ['T恤 / 衬衫', '短靴 / 短靴']
    assert fig.data[0].meta['true'] == 't-shirt'  # what programs read stays as it was
    fig = plots.confusion_figure(y, y_hat, data.TEXT_LABELS)
    assert list(fig.data[0].x) == list(data.TEXT_LABELS_ZH)
    assert data.get_fashion_mnist_labels([0, 9], lang='zh') == ['T恤', '短靴']


@pytest.mark.parametrize('make', [
    lambda: plots.curves_figure(history()),
    lambda: plots.images_figure(onp.zeros((2, 28, 28)), ['bag', 'coat']),
    lambda: plots.predictions_figure(onp.zeros((1, 28, 28)), [0], [1], data.TEXT_LABELS,
                                     probabilities=[0.5]),
    lambda: plots.confusion_figure([0, 1], [1, 1], data.TEXT_LABELS),
    lambda: plots.per_class_accuracy_figure([0, 1], [1, 1], data.TEXT_LABELS),
    lambda: plots.confused_pairs_figure(plots.confusion_matrix([0, 1], [1, 1], 10),
                                        data.TEXT_LABELS),
    lambda: plots.weights_figure(onp.zeros((784, 10)), data.TEXT_LABELS),
    lambda: plots.loss_functions_figure(),
    lambda: plots.softmax_stability_figure(),
])
def test_every_word_of_every_figure_has_a_chinese_text(make):
    language.set_language('zh')
    # a word still English: letters, and none of the CJK characters and punctuation
    left = [w for w in figure_words(make()) if any(c.isascii() and c.isalpha() for c in w)
            and not any(c >= '\u3000' for c in w) and w not in ('L1', 'L2')]
    assert left == [], f'words drawn in English in a Chinese figure: {left}'
