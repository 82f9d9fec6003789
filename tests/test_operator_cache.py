"""The cache of MXNet's operator code (gluon_softmax/_operator_cache.py): every function it makes
is the one MXNet's own ``exec`` makes, and a cache that is missing, damaged, unwritable or turned
off leaves ``import mxnet`` as it was.

Each case is a fresh interpreter (``fresh=True``: a fork of the tests' zygote has MXNet imported
already), with the cache in ``tmp_path``.
"""
import json
import marshal
import sys

import pytest

import procs

# fresh interpreters, seconds each: the full suite only (make test-fast leaves them out)
pytestmark = pytest.mark.slow

# the child: imports MXNet as our programs do, checks what it can only check inside, prints stats
CHILD = r'''
import json, sys
import gluon_softmax
from gluon_softmax import _operator_cache as cache
cache.trace = []
import mxnet as mx
from mxnet import np, npx
# every code object the import used is the one compiling MXNet's own source gives
differ = [source[:80] for source, code in cache.trace
          if code != compile(source, '<string>', 'exec')]
npx.set_np()
y = npx.softmax(np.array([[1.0, 2.0, 3.0]]))  # an operator made from the cache, called
print(json.dumps({**cache.stats, 'traced': len(cache.trace), 'differ': differ,
                  'softmax': y.asnumpy().tolist()}))
'''


def run_child(env):
    result = procs.run([sys.executable, '-c', CHILD], env=env, fresh=True)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1]), result.stderr


def env_with_cache(setting):
    import os
    return {**os.environ, 'GLUON_SOFTMAX_OPERATOR_CACHE': str(setting)}


def check_softmax(stats):
    assert [round(p, 6) for p in stats['softmax'][0]] == [0.090031, 0.244728, 0.665241]


def test_every_operator_function_is_the_one_mxnets_exec_makes(tmp_path):
    env = env_with_cache(tmp_path)
    first, _ = run_child(env)  # no file yet: compiles each source, then writes the file
    assert first['compiled'] > 2000 and first['written'] and first['passed'] == 0
    assert first['path'].startswith(str(tmp_path))
    second, err = run_child(env)  # takes them all from the file
    assert second['compiled'] == 0 and not second['written']
    assert second['cached'] == first['compiled'] + first['cached'] == second['traced']
    assert second['differ'] == [], f'{len(second["differ"])} functions differ: {second["differ"]}'
    check_softmax(second)
    assert err == ''


def test_a_damaged_file_is_compiled_around_and_rewritten(tmp_path):
    env = env_with_cache(tmp_path)
    first, _ = run_child(env)
    path = first['path']
    with open(path, 'r+b') as f:  # cut short, as a full disk or a killed writer would leave it
        f.truncate(1000)
    again, err = run_child(env)
    assert again['compiled'] == first['compiled'] and again['written'] and again['differ'] == []
    check_softmax(again)
    assert err == ''
    with open(path, 'rb') as f:
        codes = marshal.load(f)
    assert len(codes) == first['compiled']  # whole again
    with open(path, 'wb') as f:  # every key there, with something else than code under it
        marshal.dump({key: 'not code' for key in codes}, f)
    third, err = run_child(env)
    assert third['compiled'] == first['compiled'] and third['differ'] == []
    check_softmax(third)
    assert err == ''


def test_an_unwritable_place_or_the_cache_turned_off_changes_nothing(tmp_path):
    blocked = tmp_path / 'a-file'
    blocked.write_text('not a directory')
    stats, err = run_child(env_with_cache(blocked / 'cache'))
    assert stats['compiled'] > 2000 and not stats['written'] and stats['differ'] == []
    check_softmax(stats)
    assert err == ''
    stats, err = run_child(env_with_cache(0))
    assert stats['path'] is None and stats['traced'] == 0 and stats['compiled'] == 0
    check_softmax(stats)
    assert err == '' and list(tmp_path.iterdir()) == [blocked]
