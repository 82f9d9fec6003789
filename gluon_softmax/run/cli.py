"""What the command lines share: one-line argparse errors and checked numeric flag types.

Imports nothing heavy, so the launcher and the benchmark's parent process can use
it without loading MXNet.
"""
import argparse
import math

EXIT_USAGE = 2


class Parser(argparse.ArgumentParser):
    """argparse with errors as one ``error: ...`` line and exit status 2."""

    def error(self, message):
        self.exit(EXIT_USAGE, f'error: {message} (see --help)\n')


def number_type(convert, low, low_ok=True, high=None, expected=''):
    """An argparse type: ``convert(text)``, finite, >= ``low`` (> if not ``low_ok``), < ``high``."""
    def parse(text):
        try:
            value = convert(text)
        except ValueError:
            value = None
        if (value is None or not math.isfinite(value) or value < low
                or (value == low and not low_ok) or (high is not None and value >= high)):
            raise argparse.ArgumentTypeError(f'expected {expected}, got {text!r}')
        return value
    return parse


positive_int = number_type(int, 1, expected='an integer >= 1')
non_negative_int = number_type(int, 0, expected='an integer >= 0')
positive_float = number_type(float, 0, low_ok=False, expected='a positive finite number')
non_negative_float = number_type(float, 0, expected='a finite number >= 0')


class UsageError(Exception):
    """A flag value that is well-formed for argparse but unusable."""
