"""The benchmark: its pure helpers, and a --quick run on the real data (no timing assertions)."""
import json
import math
import sys

import pytest

from gluon_softmax import bench

import procs

ROW_NAMES = ['book', 'concise', 'scratch', 'pytorch', 'floor', 'floor-mxnet']
TRAINED_ROWS = ('book', 'concise', 'scratch', 'pytorch')


def test_summarize_takes_the_median_and_counts_examples():
    row = bench.summarize('concise', [0.3, 0.1, 0.2, 5.0, 0.2], warmup=1)
    assert row['seconds_per_epoch'] == pytest.approx(0.2)
    assert row['examples_per_second'] == pytest.approx(60000 / 0.2)
    assert row['epoch_seconds'] == [0.3, 0.1, 0.2, 5.0, 0.2]
    assert row['warmup'] == 1


def test_add_ratios_compares_with_book_and_pytorch():
    rows = bench.add_ratios([{'name': 'book', 'seconds_per_epoch': 4.0},
                             {'name': 'concise', 'seconds_per_epoch': 0.5},
                             {'name': 'pytorch', 'seconds_per_epoch': 0.25}])
    by_name = {row['name']: row for row in rows}
    assert by_name['book']['speedup_vs_book'] == pytest.approx(1.0)
    assert by_name['concise']['speedup_vs_book'] == pytest.approx(8.0)
    assert by_name['concise']['ratio_to_pytorch'] == pytest.approx(2.0)
    assert by_name['pytorch']['ratio_to_pytorch'] == pytest.approx(1.0)


def test_add_ratios_without_pytorch_leaves_that_ratio_empty():
    rows = bench.add_ratios([{'name': 'book', 'seconds_per_epoch': 4.0},
                             {'name': 'pytorch', 'skipped': 'torch not installed'}])
    assert rows[0]['ratio_to_pytorch'] is None
    assert rows[1]['speedup_vs_book'] is None and rows[1]['ratio_to_pytorch'] is None


def test_rows_table_is_markdown_and_says_why_a_row_was_skipped():
    rows = bench.add_ratios([
        bench.summarize('book', [2.0], warmup=1, test_acc=0.8, peak_rss_mib=250.0,
                        extrapolated_from_batches=50),
        {'name': 'pytorch', 'skipped': 'torch not installed'},
        bench.summarize('floor', [0.05], warmup=1, test_acc=None, peak_rss_mib=300.0)])
    lines = bench.rows_table(rows).splitlines()
    assert len(lines) == 2 + 3
    assert all(line.startswith('|') and line.endswith('|') for line in lines)
    assert len({line.count('|') for line in lines}) == 1  # every line has the same columns
    assert lines[2].startswith('| book * |') and '0.8000' in lines[2]
    assert 'skipped: torch not installed' in lines[3]
    assert '40.0×' in lines[4]  # 2.0 / 0.05


def test_read_flat_matches_the_package_reader(tmp_path):
    # tiny IDX files written the way tests write them: header + bytes, gzipped
    import gzip
    import struct

    import numpy as onp
    images = onp.arange(3 * 28 * 28, dtype=onp.uint8).reshape(3, 28, 28)
    labels = onp.array([0, 9, 4], dtype=onp.uint8)
    with gzip.open(tmp_path / 'train-images-idx3-ubyte.gz', 'wb') as f:
        f.write(struct.pack('>IIII', 2051, 3, 28, 28) + images.tobytes())
    (tmp_path / 'train-labels-idx1-ubyte').write_bytes(struct.pack('>II', 2049, 3)
                                                       + labels.tobytes())
    X, y = bench.read_flat(str(tmp_path), train=True)
    assert X.shape == (3, 784) and X.dtype == onp.float32
    assert onp.allclose(X, images.reshape(3, -1) / 255.0)
    assert y.tolist() == [0, 9, 4]


def positive_finite(x):
    """True for a finite number > 0."""
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.timeout(procs.LONG_TEST_SECONDS)  # every row of the benchmark, in processes
@pytest.mark.ci_leg('3.11')  # the README's make test
def test_quick_benchmark_writes_consistent_results(tmp_path, real_data_dir):
    out = tmp_path / 'tmp' / 'bench.json'  # the directory does not exist yet
    result = procs.run([sys.executable, '-m', 'gluon_softmax.bench', '--quick', '--out', str(out)],
                       what='the quick benchmark', timeout=procs.LONG_RUN_SECONDS)
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads(out.read_text())
    assert '| book * |' in result.stdout and 'Scaling' in result.stdout

    assert results['machine']['cpu_count'] >= 1 and results['machine']['mxnet'] == '1.9.1'
    rows = {row['name']: row for row in results['rows']}
    assert list(rows) == ROW_NAMES
    measured = {name: row for name, row in rows.items() if 'skipped' not in row}
    if 'skipped' in rows['pytorch']:
        assert rows['pytorch']['skipped'] == 'torch not installed'
    assert set(measured) >= set(ROW_NAMES) - {'pytorch'}
    book_s = rows['book']['seconds_per_epoch']
    pytorch_s = measured.get('pytorch', {}).get('seconds_per_epoch')
    for name, row in measured.items():
        s = row['seconds_per_epoch']
        assert positive_finite(s) and all(positive_finite(t) for t in row['epoch_seconds'])
        assert positive_finite(row['examples_per_second'])
        assert positive_finite(row['peak_rss_mib'])
        assert row['speedup_vs_book'] == pytest.approx(book_s / s)
        if pytorch_s is None:
            assert row['ratio_to_pytorch'] is None
        else:
            assert row['ratio_to_pytorch'] == pytest.approx(s / pytorch_s)
        if name in TRAINED_ROWS:
            assert 0.5 < row['test_acc'] < 1, name
        else:
            assert row['test_acc'] is None
    assert rows['book']['extrapolated_from_batches'] == bench.QUICK_BOOK_BATCHES
    # the test pass is timed where the report shows it: the concise row only
    assert [name for name, row in rows.items() if 'test_pass_with_loss_s' in row] == ['concise']
    assert positive_finite(rows['concise']['test_pass_accuracy_s'])
    assert 'test pass (concise, 10000 images): accuracy only ' in result.stdout

    assert {(row['batch_size'], row['resize']) for row in results['scaling']} >= {(256, 28),
                                                                                  (256, 56)}
    for row in results['scaling']:
        assert positive_finite(row['seconds_per_epoch'])
        assert 0.5 < row['test_acc'] < 1

    cli = results['cli']
    assert cli['returncode'] == 0
    assert positive_finite(cli['wall_seconds']) and positive_finite(cli['peak_rss_mib'])
    assert 0.5 < cli['test_acc'] < 1

    forms = results['scale_out']
    assert [run['name'] for run in forms] == list(bench.SCALE_OUT)
    assert '## Scale out' in result.stdout
    for run in forms:
        assert run['returncode'] == 0 and run['epochs'] == bench.QUICK_SCALE_OUT_EPOCHS
        assert positive_finite(run['seconds_per_epoch'])
        assert run['time_vs_one_device'] == pytest.approx(run['seconds_per_epoch']
                                                          / forms[0]['seconds_per_epoch'])
        # the same global batches in every form: the same training, up to rounding
        assert run['test_acc'] == pytest.approx(forms[0]['test_acc'], abs=2e-3)
        assert run['train_loss'] == pytest.approx(forms[0]['train_loss'], rel=1e-4)


def test_scale_out_table_has_one_line_per_form():
    runs = [{'name': name, 'seconds_per_epoch': 0.2 * (i + 1), 'time_vs_one_device': i + 1.0,
             'wall_seconds': 3.0, 'train_loss': 0.57, 'test_acc': 0.8, 'peak_rss_mib': 600.0}
            for i, name in enumerate(bench.SCALE_OUT)]
    lines = bench.scale_out_table(runs).splitlines()
    assert len(lines) == 2 + len(runs)
    assert '| 1 process, cpu:0,cpu:1 | 0.400 | 2.00x |' in lines[3]
