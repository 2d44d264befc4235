"""What the benchmark scripts share on their command line: help, lists, checks.

:func:`parser` shows a script's whole docstring (what its columns mean, its
bars and run times) and every option's default in ``--help``.
:func:`comma_list` parses the comma-separated lists some options take;
:func:`check` turns a bad argument into an ``error:`` line before any work;
:func:`optional` names the extra to install when an optional module is missing.
"""

import argparse
import importlib
import os


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """The docstring as written (its lists and commands keep their lines), and the defaults."""

    def _get_help_string(self, action):
        # A flag's False and an unset None say nothing: the help text says what unset means.
        if action.default in (None, False):
            return action.help
        return super()._get_help_string(action)


def parser(doc, **kwargs):
    """An ``ArgumentParser`` whose ``--help`` shows all of ``doc`` and every default."""
    return argparse.ArgumentParser(description=doc, formatter_class=HelpFormatter, **kwargs)


def comma_list(kind=str, choices=None):
    """``type=`` of an option that takes ``a,b,c``: a tuple of ``kind``, each among ``choices``."""

    def parse(text):
        try:
            values = tuple(kind(v) for v in text.split(",") if v != "")
        except ValueError:
            message = f"not a comma-separated list of {kind.__name__}: {text!r}"
            raise argparse.ArgumentTypeError(message) from None
        if not values:
            raise argparse.ArgumentTypeError("empty list")
        unknown = [v for v in values if choices is not None and v not in choices]
        if unknown:
            raise argparse.ArgumentTypeError(
                f"unknown {', '.join(map(str, unknown))}; choose from {', '.join(choices)}"
            )
        return values

    parse.__name__ = f"comma-separated {kind.__name__}"  # argparse names it in its errors
    return parse


def check(parser, values, name, at_least=None, file=False):
    """``parser.error`` unless every value is ``>= at_least`` (or, with ``file``, an existing file).

    Called right after ``parse_args``, so that a bad argument stops the run
    before the warm-up and the first fits rather than with a traceback later.
    """
    values = values if isinstance(values, list | tuple) else [values]
    for value in values:
        if at_least is not None and value is not None and value < at_least:
            parser.error(f"{name} must be >= {at_least}, got {value}")
        if file and value is not None and not os.path.isfile(value):
            parser.error(f"{name}: no such file {value!r}")


def grid_arguments(parser_, names):
    """Add the study scripts' positional ``datasets ks seeds`` (``names``: the data sets)."""
    parser_.add_argument("datasets", type=comma_list(str, names), help="names, comma-separated")
    parser_.add_argument("ks", type=comma_list(int), help="numbers of components, comma-separated")
    parser_.add_argument("seeds", type=comma_list(int), help="random seeds, comma-separated")


def check_grid(parser_, args):
    """``parser.error`` unless every K is at least 1 and every seed at least 0."""
    check(parser_, args.ks, "KS", at_least=1)
    check(parser_, args.seeds, "SEEDS", at_least=0)


def optional(module, extra="benchmarks", what="this benchmark"):
    """Import ``module``, or exit with the ``pip install`` that provides it."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as error:
        raise SystemExit(
            f"{what} needs {error.name or module}, which is not installed: "
            f"pip install -e '.[{extra}]' (from the repository root)"
        ) from None


def usable_cores():
    """Cores this process may run on (its affinity), not those of the machine.

    natgmm._threading.usable_cores's twin: the scripts import natgmm only after
    setting their threads (bench_em's workers), so this module does not.
    """
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count()
