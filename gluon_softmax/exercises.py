"""Checkers for the learner's own answers to the chapter's exercises.

Each ``check_*`` function calls the learner's function on hidden cases (large
and small logits, rows of zeros, float32 and float64, gradients through
autograd), compares with the chapter's own reference (``scratch``,
``training``) or MXNet's operators, returns True or False and prints one
line: a pass line, or ``not yet: <hint>`` for the first case that failed.

Every line printed comes from :data:`MESSAGES`, one table per language keyed
by message id; the language is the package's (:mod:`gluon_softmax.language`:
a ``*.zh.ipynb`` notebook gets Chinese), :func:`set_language` changes it, and
ids a table lacks fall back to English.
"""
import collections
import contextlib
import functools
import math
import numbers

import mxnet as mx
import numpy as onp
from mxnet import autograd, gluon, np, npx

from gluon_softmax import concise, data, language, scratch, training

__all__ = ['check_softmax', 'check_cross_entropy', 'check_accuracy', 'check_sgd',
           'check_train_epoch', 'check_learning_rate_answer', 'check_label_smoothing',
           'sweep_iters', 'SWEEP_LRS', 'SWEEP_EPOCHS', 'MESSAGES', 'set_language', 'message']

MESSAGES = {'en': {
    # shared by every checker
    'not_yet': 'not yet: {hint}',
    'start': '{name} raises NotImplementedError: replace that line with your code',
    'returned_none': '{call} returned None: end the function with `return ...`',
    'raised': '{call} raised {error}',
    'not_array': '{call} returned a {kind}, not an array',
    'shape': '{call} returned shape {got}, expected {expected}',
    'dtype': '{call} returned {got} for a {expected} input: keep the input\'s dtype '
             '(no astype, no np.array(..., dtype=...))',
    'float64': '{call} lost float64 precision (off by {error:.2g}): compute in the input\'s '
               'dtype, with no float32 step in between',
    'not_finite': '{call} gave {bad}',
    'exp_overflow': '{call} gave {bad}: exp(1000) overflows to inf; subtract each row\'s '
                    'maximum before exp',
    'exp_underflow': '{call} gave {bad}: every exp(-1000) underflows to 0 and 0/0 is nan; '
                     'subtracting each row\'s maximum puts an exp(0) = 1 in every row\'s sum',
    'log_underflow': '{call} gave {bad}: a probability underflowed to 0 and log(0) = -inf; '
                     'compute the log-probabilities directly: o - max - log(sum(exp(o - max)))',
    'per_example': '{call} returned shape {got}: return one loss per example, shape {expected}; '
                   'backward sums them and the update divides by the batch size',
    'grad_numpy': '{call} returned a NumPy array, which autograd cannot follow: compute with '
                  'mxnet.np inside the function',
    'grad_none': 'no gradient reached the input of {call}: use mxnet.np operations only '
                 '(no .asnumpy(), no NumPy, no new array built from values)',
    'grad_wrong': 'the gradient through {call} is off by up to {error:.2g}',
    # softmax
    'softmax.pass': 'ok: softmax passed all {count} hidden cases (logits of +-1000, a row of '
                    'zeros, an empty batch, float32 and float64, gradients)',
    'softmax.axis': '{call}: the columns sum to 1, not the rows: normalise over the classes '
                    'of each row, sum(axis=1, keepdims=True)',
    'softmax.rows': '{call}: the rows sum to {sums}, not 1: divide each exp by the sum of its '
                    'own row',
    'softmax.empty': '{call} raised {error}: MXNet 1.9.1\'s sum fails on a batch of zero rows; '
                     'when X.shape[0] == 0, return before summing (an empty result of X\'s shape)',
    'softmax.wrong': '{call} is off by up to {error:.2g} from the true softmax',
    # cross-entropy from logits
    'cross_entropy.pass': 'ok: cross-entropy from logits passed all {count} hidden cases '
                          '(logits of +-1000, a row of zeros, float32 and float64, gradients)',
    'cross_entropy.sign': '{call} is negative: the loss is minus the log-probability of the '
                          'true class',
    'cross_entropy.wrong': '{call} is off by up to {error:.2g} from -log softmax(o)[i, y[i]]',
    # accuracy
    'accuracy.pass': 'ok: accuracy counts the correct predictions in all {count} hidden cases',
    'accuracy.axis': '{call} gave {got}, the count of argmax over axis 0 (the examples): take '
                     'the argmax over axis 1, the classes of each row',
    'accuracy.fraction': '{call} gave {got}, the fraction: return the number of correct '
                         'predictions; the chapter divides by the total once, at the end',
    'accuracy.type': '{call} raised "Type inconsistent": MXNet only compares arrays of one '
                     'dtype, and argmax gives int64: cast it with .astype(y.dtype)',
    'accuracy.not_summed': '{call} returned shape {got}: sum the matches into one number',
    'accuracy.wrong': '{call} gave {got}, expected {expected} correct predictions',
    # sgd
    'sgd.pass': 'ok: sgd updates every parameter in place by lr * grad / batch_size '
                '({count} hidden cases)',
    'sgd.unchanged': '{call} left the parameters unchanged: update each one in place '
                     '(param[:] = ... or param -= ...); a new array bound to the loop '
                     'variable is lost',
    'sgd.batch_size': '{call} took a step {factor:g} times too large: divide by batch_size; '
                      'the loss was summed over the batch, so its gradient is a sum',
    'sgd.sign': '{call} moved the parameters up the gradient: subtract lr * grad / batch_size',
    'sgd.partial': '{call} updated {updated} of the {total} parameters: loop over all of params',
    'sgd.wrong': '{call} is off by up to {error:.2g} from param - lr * param.grad / batch_size',
    # one epoch of training
    'train_epoch.pass': 'ok: one epoch of your loop moves the parameters as training.train_epoch '
                        'does, with the scratch model and with Gluon\'s Dense and Trainer',
    'train_epoch.not_recorded': '{call}: {what} computed outside autograd.record(), so backward '
                                'has no graph to follow: compute y_hat and l inside '
                                '`with autograd.record():`',
    'train_epoch.no_step': '{call} never called updater.step: call updater.step(X.shape[0]) '
                           'after l.backward()',
    'train_epoch.steps': '{call} called updater.step {got} times for {expected} minibatches: '
                         'one step per minibatch',
    'train_epoch.step_size': '{call} called updater.step({got}) for a batch of {expected}: pass '
                             'X.shape[0], the size of this batch (the last one is smaller)',
    'train_epoch.no_backward': '{call}: the gradients were all zero at updater.step: call '
                               'l.backward() before the step',
    'train_epoch.too_little': '{call} moved the parameters about {factor:.0f} times too little: '
                              'call backward on the per-example losses l (or l.sum()), not '
                              'l.mean(); updater.step already divides by the batch size',
    'train_epoch.params': 'after {call} the parameters are off by up to {error:.2g} from one '
                          'correct epoch',
    'train_epoch.result': '{call} returned {got}: return (mean loss per example, accuracy), '
                          'here about ({loss:.4f}, {acc:.4f})',
    # the learning-rate sweep
    'learning_rate.pass': 'ok: lr {best:g} ends with the lowest validation loss ({loss:.3f}) '
                          'after {epochs} epochs, and with lr {too_large} the first epoch ends '
                          'above log(10) = 2.303, worse than the untrained model',
    'learning_rate.pass_none': 'ok: lr {best:g} ends with the lowest validation loss '
                               '({loss:.3f}) after {epochs} epochs, and no rate\'s first epoch '
                               'ends above log(10) = 2.303',
    'learning_rate.start': 'best_lr is None: run the sweep, then set best_lr to the rate whose '
                           'model ends with the lowest validation loss',
    'learning_rate.not_offered': '{got!r} is not one of the rates of the sweep, {lrs}',
    'learning_rate.best': 'lr {got:g} ends with validation loss {loss:.3f}, and another rate ends '
                          'lower: compare the last validation loss of every rate',
    'learning_rate.too_large_start': 'too_large is None: list the rates whose first epoch ends '
                                     'with a mean training loss above log(10) = 2.303',
    'learning_rate.too_large_extra': 'too_large holds lr {lr:g}, whose first epoch ends with a '
                                     'mean training loss of {loss:.3f}, below log(10) = 2.303',
    'learning_rate.too_large_missing': 'too_large misses a rate whose first epoch ends with a '
                                       'mean training loss above log(10) = 2.303',
    'learning_rate.no_data': 'the sweep needs Fashion-MNIST: {error}',
    # label smoothing
    'label_smoothing.pass': 'ok: label smoothing passed all {count} hidden cases (epsilon 0 and '
                            '0.1, logits of +-1000, a row of zeros, float64, gradients)',
    'label_smoothing.ignores_epsilon': '{call} equals the plain cross-entropy: mix the one-hot '
                                       'target with epsilon / K on every class',
    'label_smoothing.k_minus_1': '{call} spreads epsilon over the K - 1 other classes: here it '
                                 'goes over all K, the true one included: '
                                 'q = (1 - epsilon) * one_hot(y) + epsilon / K',
    'label_smoothing.not_finite': '{call} gave {bad}: log(softmax(o)) breaks once a probability '
                                  'underflows to 0, and exp(1000) overflows; use the '
                                  'log-softmax o - max - log(sum(exp(o - max)))',
    'label_smoothing.wrong': '{call} is off by up to {error:.2g} from '
                             '-sum(q * log softmax(o), axis=1)',
}, 'zh': {
    # 所有检查函数共用
    'not_yet': '还没通过：{hint}',
    'start': '{name} 抛出了 NotImplementedError：请把那一行换成你的代码',
    'returned_none': '{call} 返回了 None：函数最后要 `return ...`',
    'raised': '{call} 抛出了 {error}',
    'not_array': '{call} 返回的是 {kind}，不是数组',
    'shape': '{call} 返回的形状是 {got}，应为 {expected}',
    'dtype': '{call} 对 {expected} 输入返回了 {got}：请保持输入的 dtype '
             '（不要 astype，也不要 np.array(..., dtype=...)）',
    'float64': '{call} 丢失了 float64 精度（误差 {error:.2g}）：请用输入的 dtype 计算，'
               '中间不要经过 float32',
    'not_finite': '{call} 得到了 {bad}',
    'exp_overflow': '{call} 得到了 {bad}：exp(1000) 上溢为 inf；在 exp 之前先减去每行的最大值',
    'exp_underflow': '{call} 得到了 {bad}：每个 exp(-1000) 都下溢为 0，而 0/0 是 nan；'
                     '减去每行的最大值后，每行的和里都有一个 exp(0) = 1',
    'log_underflow': '{call} 得到了 {bad}：某个概率下溢为 0，而 log(0) = -inf；'
                     '请直接计算对数概率：o - max - log(sum(exp(o - max)))',
    'per_example': '{call} 返回的形状是 {got}：请为每个样本返回一个损失，形状为 {expected}；'
                   'backward 会把它们求和，更新时再除以批量大小',
    'grad_numpy': '{call} 返回了 NumPy 数组，自动微分无法追踪它：请在函数内部用 mxnet.np 计算',
    'grad_none': '没有梯度传到 {call} 的输入：只用 mxnet.np 的运算'
                 '（不要 .asnumpy()，不要 NumPy，也不要用数值新建数组）',
    'grad_wrong': '经过 {call} 的梯度最多相差 {error:.2g}',
    # softmax
    'softmax.pass': '通过：softmax 通过了全部 {count} 个隐藏测试（±1000 的 logits、全零的一行、'
                    '空批量、float32 与 float64、梯度）',
    'softmax.axis': '{call}：每一列的和为 1，而不是每一行：请在每行的各个类别上规范化，'
                    'sum(axis=1, keepdims=True)',
    'softmax.rows': '{call}：各行之和为 {sums}，不是 1：每个 exp 要除以它自己所在行的和',
    'softmax.empty': '{call} 抛出了 {error}：MXNet 1.9.1 的 sum 在零行的批量上会出错；'
                     '当 X.shape[0] == 0 时，在求和之前返回（一个与 X 形状相同的空结果）',
    'softmax.wrong': '{call} 与真正的 softmax 最多相差 {error:.2g}',
    # 由 logits 计算交叉熵
    'cross_entropy.pass': '通过：由 logits 计算的交叉熵通过了全部 {count} 个隐藏测试'
                          '（±1000 的 logits、全零的一行、float32 与 float64、梯度）',
    'cross_entropy.sign': '{call} 是负数：损失是真实类别的对数概率的相反数',
    'cross_entropy.wrong': '{call} 与 -log softmax(o)[i, y[i]] 最多相差 {error:.2g}',
    # 精度
    'accuracy.pass': '通过：accuracy 在全部 {count} 个隐藏测试中都正确统计了预测正确的数量',
    'accuracy.axis': '{call} 得到 {got}，这是沿轴 0（样本）取 argmax 的计数：'
                     '请沿轴 1（每行的各个类别）取 argmax',
    'accuracy.fraction': '{call} 得到 {got}，这是比例：请返回预测正确的数量；'
                         '本章在最后才除以总数，只除一次',
    'accuracy.type': '{call} 抛出了 "Type inconsistent"：MXNet 只比较 dtype 相同的数组，'
                     '而 argmax 返回 int64：请用 .astype(y.dtype) 转换',
    'accuracy.not_summed': '{call} 返回的形状是 {got}：请把匹配结果求和成一个数',
    'accuracy.wrong': '{call} 得到 {got}，应为 {expected} 个正确预测',
    # sgd
    'sgd.pass': '通过：sgd 原地把每个参数更新 lr * grad / batch_size（{count} 个隐藏测试）',
    'sgd.unchanged': '{call} 没有改变参数：请原地更新每个参数（param[:] = ... 或 param -= ...）；'
                     '把新数组绑定到循环变量上，更新就丢失了',
    'sgd.batch_size': '{call} 的步长大了 {factor:g} 倍：请除以 batch_size；'
                      '损失是对整个批量求和的，所以它的梯度也是一个和',
    'sgd.sign': '{call} 让参数沿梯度方向上升了：应减去 lr * grad / batch_size',
    'sgd.partial': '{call} 只更新了 {total} 个参数中的 {updated} 个：请遍历 params 中的全部参数',
    'sgd.wrong': '{call} 与 param - lr * param.grad / batch_size 最多相差 {error:.2g}',
    # 训练一个迭代周期
    'train_epoch.pass': '通过：你的循环训练一个迭代周期后，参数的变化与 training.train_epoch '
                        '相同，无论是从零实现的模型，还是 Gluon 的 Dense 与 Trainer',
    'train_epoch.not_recorded': '{call}：{what} 是在 autograd.record() 之外计算的，backward '
                                '没有计算图可循：请在 `with autograd.record():` 中计算 y_hat 和 l',
    'train_epoch.no_step': '{call} 从未调用 updater.step：请在 l.backward() 之后调用 '
                           'updater.step(X.shape[0])',
    'train_epoch.steps': '{call} 对 {expected} 个小批量调用了 {got} 次 updater.step：'
                         '每个小批量一步',
    'train_epoch.step_size': '{call} 对大小为 {expected} 的批量调用了 updater.step({got})：'
                             '请传入 X.shape[0]，即这个批量的大小（最后一个批量更小）',
    'train_epoch.no_backward': '{call}：调用 updater.step 时梯度全为零：请在这一步之前调用 '
                               'l.backward()',
    'train_epoch.too_little': '{call} 让参数移动得少了约 {factor:.0f} 倍：请对逐样本损失 l'
                              '（或 l.sum()）调用 backward，而不是 l.mean()；'
                              'updater.step 已经除以了批量大小',
    'train_epoch.params': '{call} 之后，参数与正确训练一个迭代周期的结果最多相差 {error:.2g}',
    'train_epoch.result': '{call} 返回了 {got}：请返回（每个样本的平均损失，精度），'
                          '这里约为 ({loss:.4f}, {acc:.4f})',
    # 学习率的扫描
    'learning_rate.pass': '通过：训练 {epochs} 个迭代周期后，lr {best:g} 的验证损失最低'
                          '（{loss:.3f}）；lr {too_large} 的第一个迭代周期结束时损失高于 '
                          'log(10) = 2.303，比未训练的模型还差',
    'learning_rate.pass_none': '通过：训练 {epochs} 个迭代周期后，lr {best:g} 的验证损失最低'
                               '（{loss:.3f}），没有哪个学习率的第一个迭代周期结束时高于 '
                               'log(10) = 2.303',
    'learning_rate.start': 'best_lr 是 None：先运行扫描，再把 best_lr 设为模型最终验证损失'
                           '最低的那个学习率',
    'learning_rate.not_offered': '{got!r} 不是扫描中的学习率之一，可选的是 {lrs}',
    'learning_rate.best': 'lr {got:g} 最终的验证损失为 {loss:.3f}，而另一个学习率更低：'
                          '请比较每个学习率最后的验证损失',
    'learning_rate.too_large_start': 'too_large 是 None：请列出第一个迭代周期结束时平均训练损失'
                                     '高于 log(10) = 2.303 的学习率',
    'learning_rate.too_large_extra': 'too_large 中有 lr {lr:g}，它的第一个迭代周期结束时平均'
                                     '训练损失为 {loss:.3f}，低于 log(10) = 2.303',
    'learning_rate.too_large_missing': 'too_large 漏掉了一个学习率：它的第一个迭代周期结束时'
                                       '平均训练损失高于 log(10) = 2.303',
    'learning_rate.no_data': '扫描需要 Fashion-MNIST 数据集：{error}',
    # 标签平滑
    'label_smoothing.pass': '通过：标签平滑通过了全部 {count} 个隐藏测试（epsilon 为 0 和 0.1、'
                            '±1000 的 logits、全零的一行、float64、梯度）',
    'label_smoothing.ignores_epsilon': '{call} 等于普通的交叉熵：请把独热编码的目标与每个类别上的 '
                                       'epsilon / K 混合',
    'label_smoothing.k_minus_1': '{call} 把 epsilon 分给了其余 K - 1 个类别：这里要分给全部 '
                                 'K 个类别，包括真实类别：'
                                 'q = (1 - epsilon) * one_hot(y) + epsilon / K',
    'label_smoothing.not_finite': '{call} 得到了 {bad}：一旦某个概率下溢为 0，log(softmax(o)) '
                                  '就会出错，而 exp(1000) 会上溢；请使用 log-softmax '
                                  'o - max - log(sum(exp(o - max)))',
    'label_smoothing.wrong': '{call} 与 -sum(q * log softmax(o), axis=1) 最多相差 {error:.2g}',
}}


def set_language(lang):
    """Print every later message from the table of ``lang`` (a key of :data:`MESSAGES`); the
    figures follow too (one language for the package)."""
    if lang not in MESSAGES:
        raise ValueError(f'no messages in {lang!r}; available: {", ".join(sorted(MESSAGES))}')
    language.set_language(lang)


def message(msg_id, **values):
    """The text of ``msg_id`` in the current language (English where that table lacks it)."""
    template = MESSAGES.get(language.current(), {}).get(msg_id, MESSAGES['en'][msg_id])
    return template.format(**values)


class NotYet(Exception):
    """A hidden case failed: the id of the hint to print and the values it names."""

    def __init__(self, msg_id, **values):
        super().__init__(msg_id)
        self.msg_id, self.values = msg_id, values


# ----------------------------------------------------------------------------- running cases

@contextlib.contextmanager
def np_mode():
    """MXNet's NumPy semantics for the duration of a check, whatever the caller set."""
    with mx.util.np_shape(True), mx.util.np_array(True):
        yield


def error_text(e):
    """An exception as one short line: MXNet's own sentence rather than its C++ traceback."""
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    mxnet_line = next((line for line in lines if line.startswith('MXNetError:')), None)
    text = mxnet_line[len('MXNetError:'):].strip() if mxnet_line else (lines or [''])[0]
    return f'{type(e).__name__}: {text[:200]}'.rstrip(': ')


def run_cases(exercise, fn, cases, errors=None):
    """Run ``(call, case)`` pairs in order on ``fn``; print the pass line or the first hint.

    ``errors`` maps a phrase of an exception's text to the id of a hint that
    explains it better than the exception itself.
    """
    with np_mode():
        for call, case in cases:
            try:
                case(fn)
                mx.nd.waitall()  # an asynchronous MXNet error belongs to this case
            except NotYet as failure:
                return fail(failure.msg_id, **failure.values)
            except NotImplementedError as e:
                return fail('start', name=raised_in(e, fn))
            except Exception as e:  # pylint: disable=broad-except  # the learner's code: a hint
                known = [msg for phrase, msg in (errors or {}).items() if phrase in str(e)]
                return fail(known[0] if known else 'raised', call=call, error=error_text(e))
    print(message(f'{exercise}.pass', count=len(cases)))
    return True


def raised_in(error, fn):
    """The name of the function that raised ``error``: a blank helper the learner's function
    called (their accuracy inside their train_epoch) is named, not the function checked."""
    traceback = error.__traceback__
    while traceback.tb_next is not None:
        traceback = traceback.tb_next
    name = traceback.tb_frame.f_code.co_name
    return name if name != '<module>' else getattr(fn, '__name__', 'your function')


def fail(msg_id, **values):
    """Print ``not yet: <hint>``; False."""
    print(message('not_yet', hint=message(msg_id, **values)))
    return False


def to_mx(value):
    """A NumPy array as a fresh ``mxnet.np`` array of its dtype; anything else unchanged."""
    return np.array(value, dtype=value.dtype) if isinstance(value, onp.ndarray) else value


def to_numpy(value, call):
    """The learner's result as a NumPy array, or NotYet naming what came back instead."""
    if value is None:
        raise NotYet('returned_none', call=call)
    value = value.asnumpy() if hasattr(value, 'asnumpy') else onp.asarray(value)
    if value.dtype.kind not in 'biuf':
        raise NotYet('not_array', call=call, kind=type(value).__name__)
    return value


def bad_values(array):
    """Which non-finite values ``array`` holds, e.g. ``nan`` or ``nan and inf``."""
    found = [name for name, test in (('nan', onp.isnan), ('inf', onp.isinf)) if test(array).any()]
    return ' and '.join(found)


def compare(got, expected, call, bad, wrong, diagnose=None):
    """NotYet unless ``got`` has the shape, dtype and values of ``expected`` (NumPy arrays).

    ``bad`` maps ``'nan'`` and ``'inf'`` to the hint for a result holding them
    (nan wins). ``diagnose(got, expected)`` runs first on any mismatch and
    raises a more specific NotYet when it recognises the mistake.
    """
    float64 = expected.dtype == onp.float64
    error = (float(onp.max(onp.abs(got - expected))) if got.shape == expected.shape and got.size
             else 0.0)
    close = got.shape == expected.shape and onp.allclose(
        got, expected, rtol=1e-12 if float64 else 1e-4, atol=1e-14 if float64 else 1e-5)
    if close and got.dtype == expected.dtype:
        return
    if diagnose is not None:
        diagnose(got, expected)
    if got.shape != expected.shape:
        raise NotYet('shape', call=call, got=got.shape, expected=expected.shape)
    if not onp.isfinite(got).all():
        kind = 'nan' if onp.isnan(got).any() else 'inf'
        raise NotYet((bad or {}).get(kind, 'not_finite'), call=call, bad=bad_values(got))
    if got.dtype != expected.dtype:
        raise NotYet('dtype', call=call, got=got.dtype, expected=expected.dtype)
    if float64 and onp.allclose(got, expected, rtol=1e-4, atol=1e-6):
        raise NotYet('float64', call=call, error=error)
    raise NotYet(wrong, call=call, error=error)


def value_case(reference, args, call, bad, wrong, diagnose=None, on_error=None):
    """A case comparing ``fn(*args)`` with ``reference(*args)``; each gets fresh arrays.

    ``on_error`` is the hint for an MXNetError the learner's function raises.
    """
    def case(fn):
        expected = reference(*map(to_mx, args)).asnumpy()
        try:
            got = to_numpy(fn(*map(to_mx, args)), call)
            mx.nd.waitall()  # asnumpy of an empty result does not wait for the ops behind it
        except mx.base.MXNetError as e:
            if on_error is None:
                raise
            raise NotYet(on_error, call=call, error=error_text(e)) from None
        compare(got, expected, call, bad, wrong,
                diagnose and functools.partial(diagnose, call=call, args=args))
    return call, case


def input_gradient(fn, args, weights, call):
    """The gradient of ``sum(weights * fn(*args))`` with respect to the first argument."""
    x = to_mx(args[0])
    x.attach_grad()
    with autograd.record():
        out = fn(x, *map(to_mx, args[1:]))
        if out is None:
            raise NotYet('returned_none', call=call)
        if not isinstance(out, np.ndarray):  # NumPy, or a list: nothing autograd can follow
            raise NotYet('grad_numpy', call=call)
        total = (out * np.array(weights, dtype=out.dtype)).sum()
    try:
        total.backward()
    except mx.base.MXNetError as e:
        if 'computational graph' in str(e):
            raise NotYet('grad_none', call=call) from None
        raise
    return x.grad.asnumpy()


def gradient_case(reference, args, call, weights):
    """A case comparing the gradient through ``fn`` with the gradient through ``reference``."""
    def case(fn):
        expected = input_gradient(reference, args, weights, call)
        got = input_gradient(fn, args, weights, call)
        if not onp.abs(got).any() and onp.abs(expected).any():
            raise NotYet('grad_none', call=call)
        if not onp.allclose(got, expected, rtol=1e-4, atol=1e-5):
            error = onp.nanmax(onp.abs(got - expected)) if onp.isfinite(got).all() else onp.nan
            raise NotYet('grad_wrong', call=call, error=error)
    return call, case


def normal(shape, scale=1.0, seed=0, dtype=onp.float32):
    """A fixed random array (the same on every call)."""
    return onp.random.RandomState(seed).normal(0, scale, shape).astype(dtype)


def labels(*values):
    """Class labels as the loaders give them: int32."""
    return onp.array(values, dtype=onp.int32)


# ----------------------------------------------------------------------------- 1. softmax

def softmax_rows(got, expected, call, args):
    """Name the axis mistake: columns normalised instead of rows, or rows not summing to 1."""
    if got.shape != expected.shape or not got.size or not onp.isfinite(got).all():
        return
    row_sums, col_sums = got.sum(axis=1), got.sum(axis=0)
    if not onp.allclose(row_sums, 1, atol=1e-4):
        if onp.allclose(col_sums, 1, atol=1e-4):
            raise NotYet('softmax.axis', call=call)
        raise NotYet('softmax.rows', call=call, sums=onp.round(row_sums, 4).tolist())


def softmax_cases():
    """The hidden cases of :func:`check_softmax`, in the order they are tried."""
    def case(call, X, nan='not_finite', on_error=None):
        return value_case(scratch.softmax, (X,), call, {'nan': nan}, 'softmax.wrong',
                          softmax_rows, on_error)
    large = onp.array([[1000, 0, -1000], [1000, 1000, 0]], dtype=onp.float32)
    return [
        case('softmax(np.random.normal(0, 3, (4, 10)))', normal((4, 10), 3)),
        case('softmax(np.array([[1000., 0, -1000], [1000, 1000, 0]]))', large, 'exp_overflow'),
        case('softmax(np.array([[-1000., -1000, -1001]]))',
             onp.array([[-1000, -1000, -1001]], dtype=onp.float32), 'exp_underflow'),
        case('softmax(np.zeros((1, 4)))', onp.zeros((1, 4), dtype=onp.float32)),
        case("softmax(np.array([[0, 1e-9, 2], [1000, 0, 1e-9]], dtype='float64'))",
             onp.array([[0, 1e-9, 2], [1000, 0, 1e-9]]), 'exp_overflow'),
        case('softmax(np.zeros((0, 10)))', onp.zeros((0, 10), dtype=onp.float32),
             on_error='softmax.empty'),
        gradient_case(scratch.softmax, (onp.vstack([normal((2, 3)), large[:1]]),),
                      'softmax(X) with X.attach_grad() and [1000, 0, -1000] in a row',
                      normal((3, 3), seed=1)),
    ]


def check_softmax(fn):
    """Check the learner's ``softmax(X)``: row-wise probabilities, stable for any finite X."""
    return run_cases('softmax', fn, softmax_cases())


# ----------------------------------------------------------------------------- 2. cross-entropy

def per_example(got, expected, call, args):
    """Name a mean or a sum returned in place of one loss per example."""
    if got.shape != expected.shape and got.size == 1 and expected.ndim == 1:
        raise NotYet('per_example', call=call, got=got.shape, expected=expected.shape)


def cross_entropy_diagnose(got, expected, call, args):
    """Per-example shape first, then a loss of the wrong sign."""
    per_example(got, expected, call, args)
    if got.shape == expected.shape and onp.isfinite(got).all() and (got < -1e-3).any():
        raise NotYet('cross_entropy.sign', call=call)


def cross_entropy_cases():
    """The hidden cases of :func:`check_cross_entropy`, in the order they are tried."""
    def case(call, o, y, nan='exp_overflow'):
        return value_case(scratch.softmax_cross_entropy, (o, y), call,
                          {'nan': nan, 'inf': 'log_underflow'}, 'cross_entropy.wrong',
                          cross_entropy_diagnose)
    large = onp.array([[1000, 0], [0, 1000]], dtype=onp.float32)
    return [
        case('softmax_cross_entropy(np.random.normal(0, 3, (4, 10)), np.array([0, 3, 9, 3]))',
             normal((4, 10), 3), labels(0, 3, 9, 3)),
        case('softmax_cross_entropy(np.array([[1000., 0], [0, 1000]]), np.array([1, 1]))',
             large, labels(1, 1)),
        case('softmax_cross_entropy(np.array([[-1000., -1000, 0]]), np.array([0]))',
             onp.array([[-1000, -1000, 0]], dtype=onp.float32), labels(0)),
        case('softmax_cross_entropy(np.array([[-1000., -1000]]), np.array([1]))',
             onp.array([[-1000, -1000]], dtype=onp.float32), labels(1), 'exp_underflow'),
        case('softmax_cross_entropy(np.zeros((1, 10)), np.array([3]))',
             onp.zeros((1, 10), dtype=onp.float32), labels(3)),
        case("softmax_cross_entropy(np.array([[0, 1e-9, 2], [1000, 0, 1e-9]], dtype='float64'), "
             'np.array([1, 2]))', onp.array([[0, 1e-9, 2], [1000, 0, 1e-9]]), labels(1, 2)),
        gradient_case(scratch.softmax_cross_entropy,
                      (onp.vstack([normal((2, 3)), [[1000, 0, -1000]]]), labels(0, 2, 1)),
                      'softmax_cross_entropy(o, y) with o.attach_grad() and a row [1000, 0, '
                      '-1000]', normal(3, seed=1)),
    ]


def check_cross_entropy(fn):
    """Check the learner's ``softmax_cross_entropy(o, y)``: per-example loss from logits."""
    return run_cases('cross_entropy', fn, cross_entropy_cases())


# ----------------------------------------------------------------------------- 3. accuracy

def accuracy_inputs():
    """``[(call, y_hat, y)]``: a square case where argmax over the wrong axis counts differently
    (7 rows right, by construction), probabilities with float32 labels, float64, an empty batch."""
    square = normal((10, 10), seed=2)
    winners = square.argmax(axis=1)
    y_square = onp.where(onp.arange(10) < 7, winners, (winners + 1) % 10).astype(onp.int32)
    probs = onp.exp(normal((6, 10), seed=3))
    probs /= probs.sum(axis=1, keepdims=True)
    return [
        ('accuracy(y_hat of shape (10, 10), y)', square, y_square),
        ("accuracy(probabilities of shape (6, 10), y.astype('float32'))", probs,
         probs.argmax(axis=1).astype(onp.float32)),
        ("accuracy(np.array([[0.2, 0.8], [0.9, 0.1], [0.3, 0.7]], dtype='float64'), "
         'np.array([1, 1, 1]))', onp.array([[0.2, 0.8], [0.9, 0.1], [0.3, 0.7]]), labels(1, 1, 1)),
        ('accuracy(np.zeros((0, 10)), np.zeros(0))', onp.zeros((0, 10), dtype=onp.float32),
         onp.zeros(0, dtype=onp.int32)),
    ]


def accuracy_case(call, y_hat, y):
    """A case comparing the learner's count with ``training.accuracy``."""
    def case(fn):
        expected = training.accuracy(to_mx(y_hat), to_mx(y))
        got = to_numpy(fn(to_mx(y_hat), to_mx(y)), call)
        if got.size != 1:
            raise NotYet('accuracy.not_summed', call=call, got=got.shape)
        got = float(got.reshape(()))
        if got == expected:
            return
        if len(y) and got == expected / len(y):
            raise NotYet('accuracy.fraction', call=call, got=got)
        if y_hat.shape[0] == y_hat.shape[1] and got == (y_hat.argmax(axis=0) == y).sum():
            raise NotYet('accuracy.axis', call=call, got=got)
        raise NotYet('accuracy.wrong', call=call, got=got, expected=expected)
    return call, case


def check_accuracy(fn):
    """Check the learner's ``accuracy(y_hat, y)``: the number of correct predictions."""
    return run_cases('accuracy', fn, [accuracy_case(*inputs) for inputs in accuracy_inputs()],
                     errors={'Type inconsistent': 'accuracy.type'})


# ----------------------------------------------------------------------------- 4. sgd

def params_with_grads(dtype, seed):
    """``[W (3, 4), b (4,)]`` whose gradients autograd filled with known random values."""
    params = [to_mx(normal(shape, seed=seed + i, dtype=dtype)) for i, shape in
              enumerate(((3, 4), (4,)))]
    slopes = [to_mx(normal(p.shape, seed=seed + 10 + i, dtype=dtype)) for i, p in
              enumerate(params)]
    for param in params:
        param.attach_grad()
    with autograd.record():
        total = sum((param * slope).sum() for param, slope in zip(params, slopes))
    total.backward()  # d total / d param = slope
    return params


def sgd_case(call, dtype, lr, batch_size, seed):
    """A case comparing the learner's update with ``scratch.sgd``'s on the same parameters."""
    def case(fn):
        reference = params_with_grads(dtype, seed)
        scratch.sgd(reference, lr, batch_size)
        params = params_with_grads(dtype, seed)
        before = [p.asnumpy() for p in params]
        steps = [lr * p.grad.asnumpy() / batch_size for p in params]
        held = list(params)  # the arrays a model holds: replacing list items would not reach it
        fn(params, lr, batch_size)
        got = [to_numpy(p, call) for p in held]
        expected = [p.asnumpy() for p in reference]
        if all(onp.allclose(g, e, rtol=1e-5, atol=1e-7) for g, e in zip(got, expected)):
            return
        sgd_diagnose(call, got, before, steps, batch_size)
    return call, case


def sgd_diagnose(call, got, before, steps, batch_size):
    """Name the mistake: no update, no division by the batch size, the wrong sign, a param left."""
    def all_match(candidates):
        return all(onp.allclose(g, c, rtol=1e-5, atol=1e-7) for g, c in zip(got, candidates))
    unchanged = [onp.array_equal(g, b) for g, b in zip(got, before)]
    if all(unchanged):
        raise NotYet('sgd.unchanged', call=call)
    if all_match([b - s * batch_size for b, s in zip(before, steps)]):
        raise NotYet('sgd.batch_size', call=call, factor=batch_size)
    if all_match([b + s for b, s in zip(before, steps)]):
        raise NotYet('sgd.sign', call=call)
    if any(unchanged):
        raise NotYet('sgd.partial', call=call, updated=unchanged.count(False), total=len(got))
    error = max(float(onp.max(onp.abs(g - (b - s)))) for g, b, s in zip(got, before, steps))
    raise NotYet('sgd.wrong', call=call, error=error)


def check_sgd(fn):
    """Check the learner's ``sgd(params, lr, batch_size)``: in place, divided by the batch size."""
    return run_cases('sgd', fn, [
        sgd_case('sgd([W, b], lr=0.1, batch_size=4)', onp.float32, 0.1, 4, 0),
        sgd_case("sgd([W, b] in float64, lr=0.5, batch_size=256)", onp.float64, 0.5, 256, 20),
    ])


# ----------------------------------------------------------------------------- 5. one epoch

EPOCH_INPUTS, EPOCH_EXAMPLES, EPOCH_BATCH_SIZE, EPOCH_LR = 12, 70, 32, 0.5


def epoch_arrays():
    """A tiny learnable data set: 70 examples of 12 features, labels from a fixed linear rule."""
    X = normal((EPOCH_EXAMPLES, EPOCH_INPUTS), seed=4)
    y = (X @ normal((EPOCH_INPUTS, 10), seed=5)).argmax(axis=1).astype(onp.int32)
    return X, y


def epoch_iter():
    """Batches of 32, 32 and 6, in a fixed order."""
    return data.ArrayLoader(*epoch_arrays(), EPOCH_BATCH_SIZE)


Setup = collections.namedtuple('Setup', 'net loss updater params grads')


def scratch_setup():
    """The scratch model from fixed weights, its loss and ``scratch.SGD``."""
    net = scratch.SoftmaxRegressionScratch(num_inputs=EPOCH_INPUTS, num_outputs=10)
    net.W[:] = to_mx(normal((EPOCH_INPUTS, 10), 0.1, seed=6))  # (12, 10)
    return Setup(net, scratch.softmax_cross_entropy, scratch.SGD(net.parameters(), EPOCH_LR),
                 net.parameters, lambda: [p.grad.asnumpy() for p in net.parameters()])


def concise_setup():
    """The same with Gluon: ``Dense`` from the same weights, its loss and ``Trainer``."""
    net = concise.build_net(num_outputs=10, num_inputs=EPOCH_INPUTS, hybridize=False)
    net[0].weight.set_data(to_mx(normal((EPOCH_INPUTS, 10), 0.1, seed=6).T))  # (10, 12)
    net[0].bias.set_data(np.zeros(10))
    params = list(net.collect_params().values())
    trainer = gluon.Trainer(params, 'sgd', {'learning_rate': EPOCH_LR})
    return Setup(net, concise.build_loss(hybridize=False), trainer,
                 lambda: [p.data() for p in params], lambda: [p.grad().asnumpy() for p in params])


class EpochSpy:
    """Stands in for the net, the loss and the updater the learner's loop is given, and notes
    how they were used: whether ``net`` and ``loss`` ran under ``autograd.record()``, each
    ``updater.step``'s batch size, and whether there were gradients to step with."""

    def __init__(self, setup):
        self.setup = setup
        self.start = [p.asnumpy() for p in setup.params()]
        self.unrecorded, self.batches, self.steps, self.zero_grads = set(), [], [], 0

    def net(self, X):
        """``net(X)``, noting the batch size and whether autograd records."""
        if not autograd.is_recording():
            self.unrecorded.add('y_hat')
        self.batches.append(X.shape[0])
        return self.setup.net(X)

    def loss(self, y_hat, y):
        """``loss(y_hat, y)``, noting whether autograd records."""
        if not autograd.is_recording():
            self.unrecorded.add('l')
        return self.setup.loss(y_hat, y)

    def step(self, batch_size):
        """``updater.step(batch_size)``, noting the size and gradients that are all zero."""
        self.steps.append(batch_size)
        if not any(onp.abs(g).any() for g in self.setup.grads()):
            self.zero_grads += 1
        self.setup.updater.step(batch_size)

    def __getattr__(self, name):
        """What else the loop reads of its updater (``lr``, ``learning_rate``): the real one's."""
        if name == 'setup':  # not set yet: no updater to ask
            raise AttributeError(name)
        return getattr(self.setup.updater, name)


def epoch_case(call, make_setup):
    """A case running the learner's epoch beside ``training.train_epoch`` from the same start."""
    def case(fn):
        spy = EpochSpy(make_setup())
        try:
            result, raised = fn(spy.net, epoch_iter(), spy.loss, spy), None
        except NotImplementedError:
            raise
        except Exception as e:  # pylint: disable=broad-except  # the spy's verdict comes first
            result, raised = None, e
        epoch_usage(call, spy, raised)
        reference = make_setup()
        loss_acc = training.train_epoch(reference.net, epoch_iter(), reference.loss,
                                        reference.updater)
        epoch_params(call, spy, [p.asnumpy() for p in reference.params()])
        epoch_result(call, result, loss_acc)
    return call, case


def epoch_usage(call, spy, raised):
    """NotYet for a loop that did not record, step, or step with gradients; else re-raise."""
    if spy.unrecorded:
        raise NotYet('train_epoch.not_recorded', call=call,
                     what=' and '.join(sorted(spy.unrecorded, reverse=True)))
    if spy.zero_grads:
        raise NotYet('train_epoch.no_backward', call=call)
    if raised is not None:
        raise raised
    expected = [len(y) for _, y in epoch_iter()]
    if not spy.steps:
        if not spy.batches:
            raise NotYet('returned_none', call=call)  # nothing ran: a blank answer
        raise NotYet('train_epoch.no_step', call=call)
    if len(spy.steps) != len(expected):
        raise NotYet('train_epoch.steps', call=call, got=len(spy.steps), expected=len(expected))
    for got, size in zip(spy.steps, expected):
        if got != size:
            raise NotYet('train_epoch.step_size', call=call, got=got, expected=size)


def epoch_params(call, spy, expected):
    """NotYet unless the learner's parameters ended where the reference's did."""
    got = [p.asnumpy() for p in spy.setup.params()]
    if all(onp.allclose(g, e, rtol=1e-4, atol=1e-6) for g, e in zip(got, expected)):
        return
    moved = sum(float(onp.abs(g - s).sum()) for g, s in zip(got, spy.start))
    should = sum(float(onp.abs(e - s).sum()) for e, s in zip(expected, spy.start))
    if moved and should / moved > 2:
        raise NotYet('train_epoch.too_little', call=call, factor=should / moved)
    error = max(float(onp.max(onp.abs(g - e))) for g, e in zip(got, expected))
    raise NotYet('train_epoch.params', call=call, error=error)


def epoch_result(call, result, loss_acc):
    """NotYet unless the learner's loop returned (mean loss, accuracy) as the reference did."""
    try:
        numbers = [float(to_numpy(value, call).reshape(())) for value in result]
    except (TypeError, ValueError, NotYet):
        numbers = None
    if numbers is None or len(numbers) != 2 or not onp.allclose(numbers, loss_acc, rtol=1e-4):
        raise NotYet('train_epoch.result', call=call, got=result, loss=loss_acc[0],
                     acc=loss_acc[1])


def check_train_epoch(fn):
    """Check the learner's ``train_epoch(net, train_iter, loss, updater)`` against the chapter's."""
    return run_cases('train_epoch', fn, [
        epoch_case('train_epoch(scratch model, 70 examples in batches of 32, '
                   'scratch.softmax_cross_entropy, scratch.SGD)', scratch_setup),
        epoch_case('train_epoch(Gluon Dense, the same batches, SoftmaxCrossEntropyLoss, '
                   'gluon.Trainer)', concise_setup),
    ])


# ----------------------------------------------------------------------------- 6. learning rate

SWEEP_LRS = (0.03, 0.1, 1, 10)
SWEEP_EPOCHS, SWEEP_BATCH_SIZE, SWEEP_TRAIN, SWEEP_VAL, SWEEP_SEED = 3, 256, 2000, 1000, 0
UNTRAINED_LOSS = math.log(10)  # every class equally likely: the loss of a model that knows nothing


@functools.lru_cache(maxsize=2)
def sweep_arrays(directory):
    """The first 2000 training images and the 1000 after them: ``((X, y), (X_val, y_val))``."""
    X, y = data.load_arrays(directory)
    train, val = slice(0, SWEEP_TRAIN), slice(SWEEP_TRAIN, SWEEP_TRAIN + SWEEP_VAL)
    return (X[train].copy(), y[train].copy()), (X[val].copy(), y[val].copy())


def sweep_iters(root=None):
    """``(train_iter, val_iter)`` of the sweep, both in a fixed order (no shuffling)."""
    (X, y), (X_val, y_val) = sweep_arrays(data.find_data_dir(root))
    return (data.ArrayLoader(X, y, SWEEP_BATCH_SIZE),
            data.ArrayLoader(X_val, y_val, SWEEP_BATCH_SIZE))


def sweep(root=None):
    """``{lr: (mean training loss of the first epoch, validation loss after the last)}``.

    One fresh scratch model per rate, each starting from the same weights (drawn from their
    own seed: the learner's random state is left alone), :data:`SWEEP_EPOCHS` epochs each.
    """
    train_iter, val_iter = sweep_iters(root)
    results = {}
    for lr in SWEEP_LRS:
        net = scratch.SoftmaxRegressionScratch()
        net.W[:] = to_mx(normal(net.W.shape, net.sigma, seed=SWEEP_SEED))  # (784, 10)
        updater = scratch.SGD(net.parameters(), lr)
        first = [training.train_epoch(net, train_iter, scratch.softmax_cross_entropy, updater)[0]
                 for _ in range(SWEEP_EPOCHS)][0]
        results[lr] = first, training.evaluate(net, val_iter, scratch.softmax_cross_entropy)[0]
    return results


def offered_lr(value):
    """The rate of :data:`SWEEP_LRS` equal to ``value``, or NotYet."""
    for lr in SWEEP_LRS:
        if isinstance(value, numbers.Real) and math.isclose(value, lr, rel_tol=1e-9):
            return lr
    raise NotYet('learning_rate.not_offered', got=value, lrs=list(SWEEP_LRS))


def learning_rate_verdict(best_lr, too_large, results):
    """NotYet unless ``best_lr`` ends within 10% of the lowest validation loss and ``too_large``
    holds exactly the rates whose first epoch ends worse than the untrained model."""
    val = {lr: val_loss for lr, (_, val_loss) in results.items()}
    first = {lr: first_loss for lr, (first_loss, _) in results.items()}
    if best_lr is None:
        raise NotYet('learning_rate.start')
    best = offered_lr(best_lr)
    if val[best] > 1.1 * min(val.values()):
        raise NotYet('learning_rate.best', got=best, loss=val[best])
    if too_large is None:
        raise NotYet('learning_rate.too_large_start')
    named = {offered_lr(lr) for lr in (too_large if hasattr(too_large, '__iter__')
                                       else [too_large])}
    above = {lr for lr, loss in first.items() if loss > UNTRAINED_LOSS}
    extra = sorted(named - above)
    if extra:
        raise NotYet('learning_rate.too_large_extra', lr=extra[0], loss=first[extra[0]])
    if above - named:
        raise NotYet('learning_rate.too_large_missing')
    return best, sorted(above)


def check_learning_rate_answer(best_lr, too_large, root=None):
    """Check the sweep's answers by running the sweep again (see :func:`sweep`)."""
    if best_lr is None:  # a blank answer: no need to wait for the sweep
        return fail('learning_rate.start')
    with np_mode():
        try:
            results = sweep(root)
        except data.DataError as e:
            return fail('learning_rate.no_data', error=e)
        try:
            best, above = learning_rate_verdict(best_lr, too_large, results)
        except NotYet as failure:
            return fail(failure.msg_id, **failure.values)
    print(message('learning_rate.pass' if above else 'learning_rate.pass_none', best=best,
                  loss=results[best][1], epochs=SWEEP_EPOCHS,
                  too_large=' and '.join(f'{lr:g}' for lr in above)))
    return True


# ----------------------------------------------------------------------------- 7. smoothing

def smoothed_loss(o, y, epsilon):
    """The reference: Gluon's cross-entropy against ``(1 - eps) one_hot(y) + eps / K``."""
    num_classes = o.shape[1]
    q = npx.one_hot(y, num_classes, dtype=o.dtype) * (1 - epsilon) + epsilon / num_classes
    return gluon.loss.SoftmaxCrossEntropyLoss(sparse_label=False)(o, q)


def k_minus_1_loss(o, y, epsilon):
    """The other convention: ``1 - eps`` on the true class, ``eps / (K - 1)`` on the others."""
    num_classes = o.shape[1]
    one_hot = npx.one_hot(y, num_classes, dtype=o.dtype)
    q = one_hot * (1 - epsilon) + (1 - one_hot) * epsilon / (num_classes - 1)
    return -(q * scratch.log_softmax(o)).sum(axis=1)


def smoothing_diagnose(got, expected, call, args):
    """Name a loss that ignores epsilon or uses eps / (K - 1), after the per-example shape."""
    per_example(got, expected, call, args)
    if got.shape != expected.shape or not onp.isfinite(got).all() or not args[2]:
        return
    o, y = to_mx(args[0]), to_mx(args[1])
    if onp.allclose(got, scratch.softmax_cross_entropy(o, y).asnumpy(), rtol=1e-4):
        raise NotYet('label_smoothing.ignores_epsilon', call=call)
    if onp.allclose(got, k_minus_1_loss(o, y, args[2]).asnumpy(), rtol=1e-4):
        raise NotYet('label_smoothing.k_minus_1', call=call)


def label_smoothing_cases():
    """The hidden cases of :func:`check_label_smoothing`, in the order they are tried."""
    def case(call, o, y, epsilon):
        bad = 'label_smoothing.not_finite'
        return value_case(smoothed_loss, (o, y, epsilon), call, {'nan': bad, 'inf': bad},
                          'label_smoothing.wrong', smoothing_diagnose)
    call = 'label_smoothing_cross_entropy({}, {}, {})'.format
    random_o = normal((4, 10), 3)
    large = onp.array([[1000, 0, -1000], [0, 0, 1000]], dtype=onp.float32)
    return [
        case(call('np.random.normal(0, 3, (4, 10))', 'np.array([0, 3, 9, 3])', 0.1),
             random_o, labels(0, 3, 9, 3), 0.1),
        case(call('np.random.normal(0, 3, (4, 10))', 'np.array([0, 3, 9, 3])', 0.0),
             random_o, labels(0, 3, 9, 3), 0.0),
        case(call('np.array([[1000., 0, -1000], [0, 0, 1000]])', 'np.array([1, 0])', 0.1),
             large, labels(1, 0), 0.1),
        case(call('np.zeros((1, 10))', 'np.array([3])', 0.1), onp.zeros((1, 10), onp.float32),
             labels(3), 0.1),
        case(call("np.array([[0, 1e-9, 2], [1000, 0, 1e-9]], dtype='float64')",
                  'np.array([1, 2])', 0.1),
             onp.array([[0, 1e-9, 2], [1000, 0, 1e-9]]), labels(1, 2), 0.1),
        gradient_case(smoothed_loss, (onp.vstack([normal((2, 3)), [[1000, 0, -1000]]]),
                                      labels(0, 2, 1), 0.1),
                      call('o', 'y', 0.1) + ' with o.attach_grad() and a row [1000, 0, -1000]',
                      normal(3, seed=1)),
    ]


def check_label_smoothing(fn):
    """Check the learner's ``label_smoothing_cross_entropy(o, y, epsilon)``."""
    return run_cases('label_smoothing', fn, label_smoothing_cases())
