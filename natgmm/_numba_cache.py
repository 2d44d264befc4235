"""numba's disk cache, with each kernel's saves serialised across processes.

numba saves a compiled signature by reading the kernel's index, taking the
first data file name the index does not use, writing the index, then the
data. Two processes that compile two signatures of one kernel at once (two
workers of a grid search on a cold cache, one fitting float32 rows and the
other float64, or an annealed fit beside a plain one) can both read the
index before either writes it: both take the same data file, and the index
of one can end up naming the other's machine code, which later processes
then load for the wrong argument types (a wrong result or a crash, until
the cache is deleted; numba/numba#10128). :func:`serialise_saves` makes a
kernel's saves take an exclusive lock on a file beside its index first, so
that each save reads the index the previous one wrote. Loading takes no
lock: a name, once in an index, only ever holds its own signature's code.
"""

import contextlib
import os

try:
    import fcntl
except ImportError:  # Windows: saves unserialised, as numba's own
    fcntl = None


def serialise_saves(dispatcher):
    """Make ``dispatcher``'s disk-cache saves exclusive across processes (in place).

    A dispatcher without a disk cache, or a numba whose cache is laid out
    otherwise, is left as it is.
    """
    cache_file = getattr(getattr(dispatcher, "_cache", None), "_cache_file", None)
    save = getattr(cache_file, "save", None)
    index_path = getattr(cache_file, "_index_path", None)
    if fcntl is None or save is None or not isinstance(index_path, str):
        return

    def locked_save(key, data):
        with _exclusive(index_path + ".lock"):
            save(key, data)

    cache_file.save = locked_save


@contextlib.contextmanager
def _exclusive(path):
    """Hold an exclusive lock on ``path`` (created if need be), where the file system allows.

    Where the lock file cannot be made, numba cannot write the index beside
    it either: its save then fails as it would have. A file system without
    locks (some network ones) leaves the save unserialised, as numba's own.
    """
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError:
        fd = None
    if fd is None:  # (the save runs outside the handler: its errors have no context)
        yield
        return
    try:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock
