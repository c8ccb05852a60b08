"""Exceptions rsxai raises on purpose."""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Iterable


class InputError(ValueError):
    """The user's input cannot be used.

    Every problem found is kept, one line each, naming the file or option,
    the problem and the fix, so that all of them can be reported at once.

    Parameters
    ----------
    problems : str or iterable of str
        One message per problem.
    """

    def __init__(self, problems: str | Iterable[str]):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))


class ICAConvergenceWarning(UserWarning):
    """FastICA did not converge in some restarts of :class:`rsxai.decomposition.GroupICA`.

    Expected when some components are noise; their ICASSO stability tells
    which. rsxai's own class, so that these expected warnings can be filtered
    without hiding scikit-learn's ``ConvergenceWarning`` from the classifiers.
    """


#: errno values that are faults of the machine (disk, quota, permissions), not of rsxai,
#: each with its name and the fix to print.
MACHINE_ERRNOS: dict[int, tuple[str, str]] = {
    code: fault
    for name, fault in {
        "ENOSPC": ("no space left on device", "free space"),
        "EDQUOT": ("disk quota exceeded", "free space or raise the quota"),
        "EFBIG": ("file too large for the file system", "write to another file system"),
        "EROFS": ("read-only file system", "choose a writable OUTPUT_DIR"),
        "EACCES": ("permission denied", "fix its permissions or choose another OUTPUT_DIR"),
        "EPERM": ("operation not permitted", "fix its permissions or choose another OUTPUT_DIR"),
        "EIO": ("input/output error", "check the disk"),
    }.items()
    if (code := getattr(errno, name, None)) is not None
}


class MachineFault(Exception):
    """Writing an output failed for a reason of the machine: a full disk, a quota, a
    read-only or forbidden folder. Not a bug: the message names the file and the fix.

    Outputs are written atomically, so a run stopped by a fault keeps every finished
    file and resumes where it stopped once the fault is fixed.

    Parameters
    ----------
    path : str
        The file being written.
    errno : int
        The error number (a key of :data:`MACHINE_ERRNOS`).
    action : str, default="writing"
        What was being done with ``path``.
    """

    def __init__(self, path: str, errno: int, action: str = "writing"):
        # All arguments in args, so that the error pickles back from a worker process.
        super().__init__(str(path), errno, action)
        self.path, self.errno, self.action = str(path), errno, action

    def __str__(self) -> str:
        problem, fix = MACHINE_ERRNOS.get(self.errno, (os.strerror(self.errno), "fix it"))
        return (
            f"{problem} while {self.action} {self.path}; {fix} and run again "
            "(finished work is kept)."
        )

    @classmethod
    def from_os_error(
        cls, error: OSError, path: str | None = None, action: str = "writing"
    ) -> MachineFault | None:
        """The fault ``error`` is, or None when it is no fault of the machine.

        ``path`` (default: the error's file name) is the file named in the message.

        numpy reports a short write (a full disk or quota) as an OSError without an
        errno ("N requested and M written"); it is taken as ``ENOSPC``.
        """
        code = error.errno
        if code is None and _SHORT_WRITE.search(str(error)):
            code = errno.ENOSPC
        if code not in MACHINE_ERRNOS:
            return None
        target = path if path is not None else error.filename
        return cls(str(target) if target is not None else "a file", code, action)


_SHORT_WRITE = re.compile(r"\d+ requested and \d+ written")
