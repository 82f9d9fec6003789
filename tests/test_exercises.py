"""The exercise checkers accept right answers, reject the typical wrong ones with the hint that
names the mistake, and the two notebooks run: blank, every checker says "not yet"; answered,
every checker passes."""
import functools
import importlib.util
import math
import re
import string
import sys
from pathlib import Path

import nbformat
import numpy as onp
import pytest
from mxnet import autograd, gluon, np, npx

from gluon_softmax import exercises, language, scratch, training
from test_layers import import_problems

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / 'notebooks'
# each checker cell of the notebooks, and the id of its pass line
CHECKERS = {'check_softmax': 'softmax', 'check_cross_entropy': 'cross_entropy',
            'check_accuracy': 'accuracy', 'check_sgd': 'sgd', 'check_train_epoch': 'train_epoch',
            'check_learning_rate_answer': 'learning_rate',
            'check_label_smoothing': 'label_smoothing'}


def pattern(msg_id, lang='en'):
    """A regex matching the text of ``msg_id`` (English by default) whatever values fill its
    fields."""
    parts = []
    for literal, field, _, _ in string.Formatter().parse(exercises.MESSAGES[lang][msg_id]):
        parts.append(re.escape(literal) + ('.+?' if field is not None else ''))
    return ''.join(parts)


def printed(capsys):
    """The lines printed since the last call."""
    return capsys.readouterr().out.splitlines()


def assert_hint(capsys, passed, msg_id, *phrases):
    """The checker returned False and printed one line: ``not yet:`` with the hint ``msg_id``."""
    lines = printed(capsys)
    assert passed is False
    assert len(lines) == 1, lines
    assert re.fullmatch('not yet: ' + pattern(msg_id), lines[0]), (msg_id, lines[0])
    for phrase in phrases:
        assert phrase in lines[0]
    return lines[0]


def assert_pass(capsys, passed, exercise, msg_id=None):
    """The checker returned True and printed its one pass line (``msg_id``, by default
    ``<exercise>.pass``)."""
    lines = printed(capsys)
    assert passed is True, lines
    assert len(lines) == 1, lines
    assert re.fullmatch(pattern(msg_id or f'{exercise}.pass'), lines[0]), lines


def blank(*args):
    raise NotImplementedError  # your code here


def returns_none(*args):
    return None


def raises_value_error(*args):
    raise ValueError('something else went wrong\nwith a second line')


def log_softmax(o):
    """The LogSumExp log-softmax, written here independently of scratch."""
    shifted = o - o.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def stable_softmax_without_empty_case(X):
    X_exp = np.exp(X - X.max(axis=1, keepdims=True))
    return X_exp / X_exp.sum(axis=1, keepdims=True)


def naive_softmax(X):
    X_exp = np.exp(X)
    return X_exp / X_exp.sum(axis=1, keepdims=True)


# ----------------------------------------------------------------------------- softmax

@pytest.mark.parametrize('fn', [scratch.softmax, npx.softmax], ids=['scratch', 'npx'])
def test_softmax_accepts_the_references(capsys, fn):
    assert_pass(capsys, exercises.check_softmax(fn), 'softmax')


def softmax_columns(X):
    X_exp = np.exp(X - X.max(axis=0, keepdims=True))
    return X_exp / X_exp.sum(axis=0, keepdims=True)


def softmax_clipped(X):
    """Survives overflow by clipping, not by shifting: every exp of a -1000 row is 0."""
    X_exp = np.exp(np.minimum(X, 80))
    return X_exp / X_exp.sum(axis=1, keepdims=True)


def softmax_in_numpy(X):
    x = X.asnumpy()
    x_exp = onp.exp(x - x.max(axis=1, keepdims=True))
    return x_exp / x_exp.sum(axis=1, keepdims=True)


def softmax_through_numpy(X):
    return np.array(softmax_in_numpy(X), dtype=X.dtype)  # an mxnet array, cut off the graph


def softmax_float32(X):
    return scratch.softmax(X.astype('float32'))


def softmax_float32_inside(X):
    return scratch.softmax(X.astype('float32')).astype(X.dtype)


def softmax_half_gradient(X):
    """Right values, wrong gradient: half of the graph is detached."""
    return scratch.softmax(X) * 0.5 + npx.softmax(X).detach() * 0.5


@pytest.mark.parametrize('fn, msg_id, phrase', [
    (naive_softmax, 'exp_overflow', "subtract each row's maximum before exp"),
    (softmax_clipped, 'exp_underflow', '0/0 is nan'),
    (softmax_columns, 'softmax.axis', 'the columns sum to 1'),
    (stable_softmax_without_empty_case, 'softmax.empty', 'np.zeros((0, 10))'),
    (softmax_float32, 'dtype', 'returned float32 for a float64 input'),
    (softmax_float32_inside, 'float64', 'lost float64 precision'),
    (softmax_in_numpy, 'grad_numpy', 'returned a NumPy array'),
    (softmax_through_numpy, 'grad_none', 'no gradient reached the input'),
    (softmax_half_gradient, 'grad_wrong', 'the gradient through softmax'),
    (blank, 'start', 'blank raises NotImplementedError'),
    (returns_none, 'returned_none', 'returned None'),
    (raises_value_error, 'raised', 'ValueError: something else went wrong'),
])
def test_softmax_rejects_with_the_hint(capsys, fn, msg_id, phrase):
    line = assert_hint(capsys, exercises.check_softmax(fn), msg_id, phrase)
    assert 'Traceback' not in line


# ----------------------------------------------------------------------------- cross-entropy

def cross_entropy_from_logits(o, y):
    return -npx.pick(log_softmax(o), y, axis=1)


@pytest.mark.parametrize('fn', [scratch.softmax_cross_entropy, cross_entropy_from_logits,
                                gluon.loss.SoftmaxCrossEntropyLoss()],
                         ids=['scratch', 'log_softmax', 'gluon'])
def test_cross_entropy_accepts_the_references(capsys, fn):
    assert_pass(capsys, exercises.check_cross_entropy(fn), 'cross_entropy')


def log_of_stable_softmax(o, y):
    return -np.log(npx.pick(scratch.softmax(o), y, axis=1))


def log_of_naive_softmax(o, y):
    return -np.log(npx.pick(naive_softmax(o), y, axis=1))


def mean_cross_entropy(o, y):
    return cross_entropy_from_logits(o, y).mean()


def plus_log(o, y):
    return npx.pick(log_softmax(o), y, axis=1)


@pytest.mark.parametrize('fn, msg_id, phrase', [
    (log_of_stable_softmax, 'log_underflow', 'gave inf: a probability underflowed to 0'),
    (log_of_naive_softmax, 'exp_overflow', 'gave nan'),
    (mean_cross_entropy, 'per_example', 'returned shape ()'),
    (plus_log, 'cross_entropy.sign', 'is negative'),
    (blank, 'start', 'NotImplementedError'),
])
def test_cross_entropy_rejects_with_the_hint(capsys, fn, msg_id, phrase):
    assert_hint(capsys, exercises.check_cross_entropy(fn), msg_id, phrase)


# ----------------------------------------------------------------------------- accuracy

def accuracy_in_numpy(y_hat, y):
    return onp.sum(y_hat.asnumpy().argmax(axis=1) == y.asnumpy())  # a NumPy integer


@pytest.mark.parametrize('fn', [training.accuracy, accuracy_in_numpy], ids=['chapter', 'numpy'])
def test_accuracy_accepts_the_references(capsys, fn):
    assert_pass(capsys, exercises.check_accuracy(fn), 'accuracy')


def accuracy_axis_0(y_hat, y):
    return float((y_hat.argmax(axis=0).astype(y.dtype) == y).sum())


def accuracy_without_cast(y_hat, y):
    return float((y_hat.argmax(axis=1) == y).sum())


def accuracy_fraction(y_hat, y):
    return training.accuracy(y_hat, y) / len(y)


def accuracy_not_summed(y_hat, y):
    return y_hat.argmax(axis=1).astype(y.dtype) == y


@pytest.mark.parametrize('fn, msg_id, phrase', [
    (accuracy_axis_0, 'accuracy.axis', 'take the argmax over axis 1'),
    (accuracy_without_cast, 'accuracy.type', 'cast it with .astype(y.dtype)'),
    (accuracy_fraction, 'accuracy.fraction', 'gave 0.7, the fraction'),
    (accuracy_not_summed, 'accuracy.not_summed', 'returned shape (10,)'),
    (blank, 'start', 'NotImplementedError'),
])
def test_accuracy_rejects_with_the_hint(capsys, fn, msg_id, phrase):
    assert_hint(capsys, exercises.check_accuracy(fn), msg_id, phrase)


def test_accuracys_square_case_tells_the_axes_apart():
    call, y_hat, y = exercises.accuracy_inputs()[0]
    assert y_hat.shape == (10, 10)
    right = (y_hat.argmax(axis=1) == y).sum()
    wrong_axis = (y_hat.argmax(axis=0) == y).sum()
    assert right == 7 and wrong_axis != right and wrong_axis != right / 10


# ----------------------------------------------------------------------------- sgd

def sgd_inplace_subtract(params, lr, batch_size):
    for param in params:
        param -= lr * param.grad / batch_size


@pytest.mark.parametrize('fn', [scratch.sgd, sgd_inplace_subtract], ids=['chapter', '-='])
def test_sgd_accepts_the_references(capsys, fn):
    assert_pass(capsys, exercises.check_sgd(fn), 'sgd')


def sgd_without_batch_size(params, lr, batch_size):
    for param in params:
        param[:] = param - lr * param.grad


def sgd_rebinding(params, lr, batch_size):
    for param in params:
        param = param - lr * param.grad / batch_size  # noqa: F841  the mistake under test


def sgd_replacing_list_items(params, lr, batch_size):
    for i, param in enumerate(params):
        params[i] = param - lr * param.grad / batch_size


def sgd_uphill(params, lr, batch_size):
    for param in params:
        param[:] = param + lr * param.grad / batch_size


def sgd_first_only(params, lr, batch_size):
    params[0][:] = params[0] - lr * params[0].grad / batch_size


@pytest.mark.parametrize('fn, msg_id, phrase', [
    (sgd_without_batch_size, 'sgd.batch_size', 'a step 4 times too large: divide by batch_size'),
    (sgd_rebinding, 'sgd.unchanged', 'update each one in place'),
    (sgd_replacing_list_items, 'sgd.unchanged', 'update each one in place'),
    (sgd_uphill, 'sgd.sign', 'up the gradient'),
    (sgd_first_only, 'sgd.partial', 'updated 1 of the 2 parameters'),
    (blank, 'start', 'NotImplementedError'),
])
def test_sgd_rejects_with_the_hint(capsys, fn, msg_id, phrase):
    assert_hint(capsys, exercises.check_sgd(fn), msg_id, phrase)


def test_sgds_hidden_gradients_come_from_autograd():
    params = exercises.params_with_grads(onp.float32, 0)
    assert [p.shape for p in params] == [(3, 4), (4,)]
    for i, param in enumerate(params):
        slope = exercises.normal(param.shape, seed=10 + i)
        assert onp.array_equal(param.grad.asnumpy(), slope)


# ----------------------------------------------------------------------------- one epoch

def test_train_epoch_accepts_the_chapters_loop(capsys):
    assert_pass(capsys, exercises.check_train_epoch(training.train_epoch), 'train_epoch')


def epoch_without_record(net, train_iter, loss, updater):
    for X, y in train_iter:
        l = loss(net(X), y)  # noqa: E741
        l.backward()
        updater.step(X.shape[0])


def epoch_with_mean(net, train_iter, loss, updater):
    for X, y in train_iter:
        with autograd.record():
            l = loss(net(X), y).mean()  # noqa: E741
        l.backward()
        updater.step(X.shape[0])


def epoch_fixed_step(net, train_iter, loss, updater):
    for X, y in train_iter:
        with autograd.record():
            l = loss(net(X), y)  # noqa: E741
        l.backward()
        updater.step(32)


def epoch_without_backward(net, train_iter, loss, updater):
    for X, y in train_iter:
        with autograd.record():
            loss(net(X), y)
        updater.step(X.shape[0])


def epoch_without_step(net, train_iter, loss, updater):
    for X, y in train_iter:
        with autograd.record():
            l = loss(net(X), y)  # noqa: E741
        l.backward()


def epoch_one_step_at_the_end(net, train_iter, loss, updater):
    for X, y in train_iter:
        with autograd.record():
            l = loss(net(X), y)  # noqa: E741
        l.backward()
    updater.step(X.shape[0])


def epoch_without_return(net, train_iter, loss, updater):
    for X, y in train_iter:
        with autograd.record():
            l = loss(net(X), y)  # noqa: E741
        l.backward()
        updater.step(X.shape[0])


def epoch_pass(net, train_iter, loss, updater):
    pass


@pytest.mark.parametrize('fn, msg_id, phrase', [
    (epoch_without_record, 'train_epoch.not_recorded', 'y_hat and l computed outside'),
    (epoch_with_mean, 'train_epoch.too_little', 'not l.mean()'),
    (epoch_fixed_step, 'train_epoch.step_size', 'updater.step(32) for a batch of 6'),
    (epoch_without_backward, 'train_epoch.no_backward', 'call l.backward() before the step'),
    (epoch_without_step, 'train_epoch.no_step', 'never called updater.step'),
    (epoch_one_step_at_the_end, 'train_epoch.steps', 'updater.step 1 times for 3 minibatches'),
    (epoch_without_return, 'train_epoch.result', 'returned None: return (mean loss'),
    (epoch_pass, 'returned_none', 'returned None'),
    (blank, 'start', 'NotImplementedError'),
])
def test_train_epoch_rejects_with_the_hint(capsys, fn, msg_id, phrase):
    assert_hint(capsys, exercises.check_train_epoch(fn), msg_id, phrase)


def test_a_blank_helper_is_named_rather_than_the_function_checked(capsys):
    def accuracy(y_hat, y):
        raise NotImplementedError  # your code here

    def train_epoch(net, train_iter, loss, updater):
        for X, y in train_iter:
            with autograd.record():
                y_hat = net(X)
                l = loss(y_hat, y)  # noqa: E741
            l.backward()
            updater.step(X.shape[0])
            accuracy(y_hat, y)
    assert_hint(capsys, exercises.check_train_epoch(train_epoch), 'start',
                'accuracy raises NotImplementedError')


def test_train_epoch_checks_the_gluon_case_too(capsys):
    """A loop that only works with the scratch updater fails on Gluon's Trainer."""
    def reads_the_scratch_updaters_lr(net, train_iter, loss, updater):
        assert updater.lr > 0  # scratch.SGD has lr, gluon.Trainer has learning_rate
        return training.train_epoch(net, train_iter, loss, updater)
    assert_hint(capsys, exercises.check_train_epoch(reads_the_scratch_updaters_lr), 'raised',
                'Gluon Dense', "AttributeError: 'Trainer' object has no attribute 'lr'")


# ----------------------------------------------------------------------------- label smoothing

def smoothing_by_hand(o, y, epsilon):
    """The chapter's formula with scratch's log-softmax (the checker's truth is Gluon's loss)."""
    num_classes = o.shape[1]
    q = npx.one_hot(y, num_classes, dtype=o.dtype) * (1 - epsilon) + epsilon / num_classes
    return -(q * scratch.log_softmax(o)).sum(axis=1)


def test_label_smoothing_accepts_the_reference(capsys):
    assert_pass(capsys, exercises.check_label_smoothing(smoothing_by_hand), 'label_smoothing')


def smoothing_ignoring_epsilon(o, y, epsilon):
    return scratch.softmax_cross_entropy(o, y)


def smoothing_over_the_others(o, y, epsilon):
    return exercises.k_minus_1_loss(o, y, epsilon)


def smoothing_log_of_softmax(o, y, epsilon):
    num_classes = o.shape[1]
    q = npx.one_hot(y, num_classes, dtype=o.dtype) * (1 - epsilon) + epsilon / num_classes
    return -(q * np.log(scratch.softmax(o))).sum(axis=1)


def smoothing_float32_target(o, y, epsilon):
    num_classes = o.shape[1]
    q = npx.one_hot(y, num_classes) * (1 - epsilon) + epsilon / num_classes  # float32
    return -(q * scratch.log_softmax(o)).sum(axis=1)


def smoothing_mean(o, y, epsilon):
    return smoothing_by_hand(o, y, epsilon).mean()


@pytest.mark.parametrize('fn, msg_id, phrase', [
    (smoothing_ignoring_epsilon, 'label_smoothing.ignores_epsilon', 'plain cross-entropy'),
    (smoothing_over_the_others, 'label_smoothing.k_minus_1', 'over the K - 1 other classes'),
    (smoothing_log_of_softmax, 'label_smoothing.not_finite', 'use the log-softmax'),
    (smoothing_float32_target, 'float64', 'lost float64 precision'),
    (smoothing_mean, 'per_example', 'one loss per example'),
    (blank, 'start', 'NotImplementedError'),
])
def test_label_smoothing_rejects_with_the_hint(capsys, fn, msg_id, phrase):
    assert_hint(capsys, exercises.check_label_smoothing(fn), msg_id, phrase)


def test_label_smoothings_truth_is_the_chapters_formula():
    """Gluon's loss on soft labels (the checker's truth) equals the formula written out."""
    o = np.array(exercises.normal((5, 10), 3))
    y = np.array([0, 1, 2, 3, 9], dtype='int32')
    for epsilon in (0.0, 0.1, 0.5):
        assert onp.allclose(exercises.smoothed_loss(o, y, epsilon).asnumpy(),
                            smoothing_by_hand(o, y, epsilon).asnumpy(), rtol=1e-5)
    assert onp.allclose(exercises.smoothed_loss(o, y, 0.0).asnumpy(),
                        scratch.softmax_cross_entropy(o, y).asnumpy(), rtol=1e-5)


# ----------------------------------------------------------------------------- learning rate

def learner_sweep(seed):
    """The sweep as a learner would run it: training.train, the model's own random start."""
    import mxnet as mx
    mx.random.seed(seed)
    train_iter, val_iter = exercises.sweep_iters()
    first, val = {}, {}
    for lr in exercises.SWEEP_LRS:
        net = scratch.SoftmaxRegressionScratch()
        history = training.train(net, train_iter, val_iter, scratch.softmax_cross_entropy,
                                 scratch.SGD(net.parameters(), lr), exercises.SWEEP_EPOCHS)
        first[lr], val[lr] = history[0]['train_loss'], history[-1]['test_loss']
    return min(val, key=val.get), [lr for lr, loss in first.items() if loss > math.log(10)]


@pytest.mark.slow  # seconds each: the full suite only (make test-fast leaves it out)
@pytest.mark.integration
@pytest.mark.parametrize('seed', [1, 2])
def test_learning_rate_accepts_what_a_learners_sweep_finds(capsys, real_data_dir, seed):
    """Another random start than the checker's leads to the same answers."""
    best, too_large = learner_sweep(seed)
    assert_pass(capsys, exercises.check_learning_rate_answer(best, too_large), 'learning_rate')


@pytest.mark.integration
def test_learning_rate_rejects_wrong_answers_with_the_hint(capsys, real_data_dir, monkeypatch):
    best, too_large = learner_sweep(3)
    # the checker still runs its own sweep, once for the five answers below
    monkeypatch.setattr(exercises, 'sweep', functools.lru_cache()(exercises.sweep))
    others = [lr for lr in exercises.SWEEP_LRS if lr != best]
    below = [lr for lr in exercises.SWEEP_LRS if lr not in too_large]
    check = exercises.check_learning_rate_answer
    assert_hint(capsys, check(others[0], too_large), 'learning_rate.best', 'another rate')
    assert_hint(capsys, check(0.5, too_large), 'learning_rate.not_offered', '0.5')
    assert_hint(capsys, check(best, None), 'learning_rate.too_large_start')
    assert_hint(capsys, check(best, too_large + below[:1]), 'learning_rate.too_large_extra',
                f'lr {below[0]:g}')
    assert_hint(capsys, check(best, too_large[1:]), 'learning_rate.too_large_missing')


@pytest.mark.slow  # seconds each: the full suite only (make test-fast leaves it out)
@pytest.mark.integration
def test_learning_rate_truth_is_recomputed_for_the_rates_offered(capsys, real_data_dir,
                                                                 monkeypatch):
    """With other rates on offer the checker's answer follows: it is computed, not stored."""
    best, _ = learner_sweep(0)
    assert_hint(capsys, exercises.check_learning_rate_answer(0.03, []), 'learning_rate.best')
    monkeypatch.setattr(exercises, 'SWEEP_LRS', (0.01, 0.03))
    assert learner_sweep(0) == (0.03, [])  # the small rates: 0.03 ahead, neither overshoots
    assert_pass(capsys, exercises.check_learning_rate_answer(0.03, []), 'learning_rate',
                'learning_rate.pass_none')
    assert_hint(capsys, exercises.check_learning_rate_answer(0.03, [best]),
                'learning_rate.not_offered')


def test_learning_rate_blank_and_missing_data(capsys, tmp_path):
    assert_hint(capsys, exercises.check_learning_rate_answer(None, None), 'learning_rate.start')
    missing = tmp_path / 'no-data-here'
    assert_hint(capsys, exercises.check_learning_rate_answer(0.1, [1, 10], root=missing),
                'learning_rate.no_data', str(missing))


# ----------------------------------------------------------------------------- messages

def test_every_message_comes_from_the_table_of_the_language(capsys, monkeypatch):
    """A second table changes what is printed, not how the checkers decide; ids it lacks fall
    back to English."""
    monkeypatch.setattr(language, 'LANGUAGE', 'en')  # restored after the test
    monkeypatch.setitem(exercises.MESSAGES, 'zh', {'not_yet': 'XX {hint}',
                                                   'softmax.pass': 'XX ok {count}'})
    exercises.set_language('zh')
    assert exercises.check_softmax(blank) is False
    assert printed(capsys) == ['XX ' + exercises.MESSAGES['en']['start'].format(name='blank')]
    assert exercises.check_softmax(scratch.softmax) is True
    assert printed(capsys) == ['XX ok 7']
    assert language.current() == 'zh'  # one language for the package: the figures follow
    with pytest.raises(ValueError, match="no messages in 'zz'; available: en, zh"):
        exercises.set_language('zz')


def placeholders(template):
    return sorted(field for _, field, _, _ in string.Formatter().parse(template) if field)


def test_every_english_message_has_a_chinese_one_with_the_same_placeholders():
    english, chinese = exercises.MESSAGES['en'], exercises.MESSAGES['zh']
    assert sorted(set(english) - set(chinese)) == [], 'hints without a Chinese text'
    assert sorted(set(chinese) - set(english)) == [], 'Chinese hints no checker prints'
    for msg_id, text in english.items():
        assert placeholders(chinese[msg_id]) == placeholders(text), msg_id
        assert re.search('[\u4e00-\u9fff]', chinese[msg_id]), f'{msg_id}: not Chinese'


def test_the_chinese_table_prints_chinese(capsys, monkeypatch):
    monkeypatch.setattr(language, 'LANGUAGE', 'en')
    exercises.set_language('zh')
    assert exercises.check_softmax(blank) is False
    assert printed(capsys) == ['还没通过：blank 抛出了 NotImplementedError：请把那一行换成你的代码']


def test_the_checkers_use_only_the_chapter_mxnet_and_numpy():
    path = ROOT / 'gluon_softmax' / 'exercises.py'
    problems = import_problems(path.read_text(encoding='utf-8'), 'exercises', str(path))
    assert problems == []
    source = path.read_text(encoding='utf-8')
    assert 'from gluon_softmax import concise, data, language, scratch, training' in source
    assert import_problems('from gluon_softmax.run import rundir', 'exercises')  # it would see


# ----------------------------------------------------------------------------- notebooks

def load_maker():
    """``notebooks/make_exercises.py`` as a module."""
    spec = importlib.util.spec_from_file_location('make_exercises',
                                                  NOTEBOOKS / 'make_exercises.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize('name', ['exercises.ipynb', 'solutions.ipynb'])
def test_committed_notebooks_are_what_the_script_writes(name):
    maker = load_maker()
    text = (NOTEBOOKS / name).read_text(encoding='utf-8')
    assert text == nbformat.writes(maker.build(maker.NOTEBOOKS[name])) + '\n'
    nb = nbformat.reads(text, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata.kernelspec.name == 'python3'
    for cell in nb.cells:
        if cell.cell_type == 'code':
            assert cell.outputs == [] and cell.execution_count is None
    first = next(cell.source for cell in nb.cells if cell.cell_type == 'code')
    assert first.index('import gluon_softmax') < first.index('from mxnet import')
    assert maker.main(['--check']) == 0


def test_both_notebooks_have_the_same_cells_but_the_answers():
    maker = load_maker()
    blank_nb, solved_nb = maker.build(False), maker.build(True)
    assert [c.cell_type for c in blank_nb.cells] == [c.cell_type for c in solved_nb.cells]
    differ = [i for i, (b, s) in enumerate(zip(blank_nb.cells, solved_nb.cells))
              if b.source != s.source]
    answers = [i for i, (_, b, s) in enumerate(maker.CELLS) if b != s]
    assert differ == answers and len(answers) >= 8
    checks = [c.source for c in blank_nb.cells if c.source.startswith('check_')]
    assert sorted(re.match(r'(\w+)\(', c).group(1) for c in checks) == sorted(CHECKERS)
    skeletons = [c.source for c in blank_nb.cells if 'def ' in c.source]
    assert len(skeletons) == 6
    assert all('raise NotImplementedError  # your code here' in s for s in skeletons)


def run_cells(maker, solutions, skip=('sweep_iters(', 'iter(train_iter)', 'best_lr, too_large')):
    """Execute the notebook's code cells in this process (the sweep's cells left out); the
    checkers' printed lines, one list per checker cell."""
    namespace, lines = {}, []
    for kind, blank_source, solution_source in maker.CELLS:
        source = solution_source if solutions else blank_source
        if kind != 'code' or any(word in source for word in skip):
            continue
        exec(compile(source, '<cell>', 'exec'), namespace)  # pylint: disable=exec-used
        if source.startswith('check_'):
            lines.append(source)
    return namespace, lines


def test_the_answers_pass_and_the_blanks_do_not_in_process(capsys):
    """The notebooks' cells, run here: each solution passes its checker, each blank gets the
    hint to start (the notebook runs below do the same in a real kernel, with the sweep)."""
    maker = load_maker()
    _, checks = run_cells(maker, solutions=True)
    outputs = printed(capsys)
    assert len(checks) == len(outputs) == 6
    for source, line in zip(checks, outputs):
        exercise = CHECKERS[re.match(r'(\w+)\(', source).group(1)]
        assert re.fullmatch(pattern(f'{exercise}.pass'), line), line
    _, checks = run_cells(maker, solutions=False)
    outputs = printed(capsys)
    assert len(outputs) == 6
    assert all(re.fullmatch('not yet: ' + pattern('start'), line) for line in outputs), outputs


@pytest.fixture
def kernel(tmp_path, monkeypatch):
    """A 'python3' kernel spec starting this interpreter with this checkout's package (the way
    tests/test_notebook.py runs the chapter's notebook)."""
    from ipykernel.kernelspec import install
    install(kernel_name='python3', prefix=str(tmp_path / 'jupyter'))
    monkeypatch.setenv('JUPYTER_PATH', str(tmp_path / 'jupyter' / 'share' / 'jupyter'))
    monkeypatch.setenv('PYTHONPATH', str(ROOT))
    return 'python3'


def execute(name, kernel):
    """Run a notebook to the end (any cell's error fails); its code cells and their text."""
    from nbclient import NotebookClient
    nb = nbformat.read(str(NOTEBOOKS / name), as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(
        'import sys, gluon_softmax\nprint(sys.prefix)\nprint(gluon_softmax.__file__)'))
    # the kernel is told the notebook's path as Jupyter tells it: a .zh.ipynb runs in Chinese
    NotebookClient(nb, kernel_name=kernel, timeout=60, allow_errors=False,
                   resources={'metadata': {'path': str(NOTEBOOKS)}}).execute(
                       env=language.kernel_env(NOTEBOOKS / name))
    cells = [cell for cell in nb.cells if cell.cell_type == 'code']
    texts = [''.join(out.get('text', '') for out in cell.outputs if out.output_type == 'stream')
             for cell in cells]
    prefix, package = texts[-1].split()
    assert prefix == sys.prefix, 'the kernel ran another Python'
    assert Path(package).parent == ROOT / 'gluon_softmax', 'the kernel imported another copy'
    return cells[:-1], texts[:-1]


def checker_lines(cells, texts):
    """``[(exercise, printed text)]`` for every checker cell, in order."""
    found = []
    for cell, text in zip(cells, texts):
        match = re.match(r'(check_\w+)\(', cell.source)
        if match:
            assert not [out for out in cell.outputs if out.output_type == 'execute_result']
            found.append((CHECKERS[match.group(1)], text.strip()))
    assert [exercise for exercise, _ in found] == list(CHECKERS.values())
    return found


# the Chinese notebooks have the English code cells; the kernel speaks the file name's language
LANGUAGES = pytest.mark.parametrize('lang', ['en', 'zh'])


def notebook_name(stem, lang):
    return f'{stem}.ipynb' if lang == 'en' else f'{stem}.{lang}.ipynb'


@pytest.mark.slow  # a kernel and the whole notebook: the full suite only
@pytest.mark.integration
@pytest.mark.timeout(90)
@LANGUAGES
def test_exercises_notebook_runs_blank_and_every_checker_says_not_yet(kernel, real_data_dir,
                                                                       lang):
    cells, texts = execute(notebook_name('exercises', lang), kernel)
    not_yet = re.escape(exercises.MESSAGES[lang]['not_yet'].format(hint=''))
    for exercise, text in checker_lines(cells, texts):
        start = 'learning_rate.start' if exercise == 'learning_rate' else 'start'
        assert re.fullmatch(not_yet + pattern(start, lang), text), (exercise, text)


@pytest.mark.slow  # a kernel and the whole notebook: the full suite only
@pytest.mark.integration
@pytest.mark.timeout(90)
@LANGUAGES
def test_solutions_notebook_runs_and_every_checker_passes(kernel, real_data_dir, lang):
    cells, texts = execute(notebook_name('solutions', lang), kernel)
    for exercise, text in checker_lines(cells, texts):
        assert re.fullmatch(pattern(f'{exercise}.pass', lang), text), (exercise, text)
    sweep = next(text for cell, text in zip(cells, texts) if 'SWEEP_LRS:' in cell.source)
    assert len(re.findall(r'lr +\S+: first epoch +\S+, validation +\S+', sweep)) == 4
