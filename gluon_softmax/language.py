"""The language the package speaks to a learner in (figure words, exercise hints): 'en' or 'zh'.

The Chinese notebooks run the very code cells of the English ones, so they cannot say
``set_language('zh')`` themselves; the language comes from outside the code instead, in this
order: ``$GLUON_SOFTMAX_LANG``, else the notebook's file name (a kernel that Jupyter starts for a
notebook gets its path as ``$JPY_SESSION_NAME``; ``*.zh.ipynb`` means Chinese), else English.
Hosts that do not pass the path (Colab, VS Code) take ``set_language('zh')`` or the variable.
"""
import os

LANGUAGES = ('en', 'zh')
ENV_VAR = 'GLUON_SOFTMAX_LANG'
SESSION_VAR = 'JPY_SESSION_NAME'  # what jupyter_server sets for the kernels it starts


def notebook_language(path):
    """'zh' for a notebook named ``*.zh.ipynb``, else 'en'."""
    return 'zh' if str(path).endswith('.zh.ipynb') else 'en'


def from_environment(environ=None):
    """The language an environment asks for (see the module's docstring)."""
    environ = os.environ if environ is None else environ
    chosen = environ.get(ENV_VAR)
    if chosen:
        if chosen not in LANGUAGES:
            raise ValueError(f'{ENV_VAR}={chosen!r}: expected one of {", ".join(LANGUAGES)}')
        return chosen
    return notebook_language(environ.get(SESSION_VAR, ''))


def kernel_env(notebook_path, environ=None):
    """The environment for a kernel that runs ``notebook_path``, as jupyter_server gives it
    (for nbclient and the export, which start kernels themselves)."""
    return {**(os.environ if environ is None else environ), SESSION_VAR: str(notebook_path)}


LANGUAGE = from_environment()


def set_language(lang):
    """Show every later figure and hint in ``lang`` (one of :data:`LANGUAGES`)."""
    global LANGUAGE  # pylint: disable=global-statement
    if lang not in LANGUAGES:
        raise ValueError(f'no language {lang!r}; available: {", ".join(LANGUAGES)}')
    LANGUAGE = lang


def current():
    """The language chosen now."""
    return LANGUAGE
