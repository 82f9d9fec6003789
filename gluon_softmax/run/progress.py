"""The progress bar over an epoch's batches (on a terminal only)."""
import sys


def progress_bar(num_epochs, stream=None):
    """``progress(batches, epoch)``: a tqdm bar over each epoch when ``stream`` is a terminal."""
    stream = sys.stderr if stream is None else stream
    if not stream.isatty():
        return None
    from tqdm import tqdm
    width = len(str(num_epochs))
    return lambda batches, epoch: tqdm(batches, total=len(batches), leave=False, unit='batch',
                                       desc=f'epoch {epoch:>{width}}/{num_epochs}', file=stream)
