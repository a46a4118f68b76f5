"""The registry's errors, and the helpers that turn an exception into the one line a user reads."""

from __future__ import annotations

import errno


class MissingExtraError(ImportError):
    """An optional library a component needs (a grounder's faiss, the vllm engine's vLLM) is not installed; the
    message names what to install, and the default that needs nothing. A user error: one line, exit code 2."""


class RegistryError(LookupError):
    """A component name or kind that cannot be resolved, or two components claiming one name."""


class OptionsValidatorError(ValueError):
    """A component's ``Options`` validator raised something other than a user error (its own bug): one line, the
    original exception chained for a debugger. :meth:`Registry.build` names the component and its package."""


class PluginError(RegistryError, ValueError):
    """A third-party component's own user error (a ValueError, OSError or LookupError raised while it was built),
    with the plugin named. A ValueError too, so code that caught the plugin's ValueError still catches it."""


def _at_the_call(exc: BaseException) -> bool:
    """``exc`` was raised by the call in the frame that caught it (its arguments did not bind), not inside the
    called code: the traceback has no frame below the catching one."""
    return exc.__traceback__ is not None and exc.__traceback__.tb_next is None


def class_path(obj: object) -> str:
    """``module.Class`` of ``obj``'s type, for messages about a component that broke its contract: a plugin's
    module names its package, where the class name alone may not."""
    return f"{type(obj).__module__}.{type(obj).__qualname__}"


def error_message(exc: BaseException) -> str:
    """One line for a user error: a KeyError's own text, an OSError as ``path: reason`` (the CLI prints every
    user error this way; a plugin's is named with it)."""
    if isinstance(exc, KeyError) and exc.args:
        return str(exc.args[0])
    if isinstance(exc, OSError) and exc.strerror and exc.filename is not None:
        target = f" -> {exc.filename2}" if exc.filename2 is not None else ""
        return f"{exc.filename}{target}: {exc.strerror}"
    if isinstance(exc, OSError) and exc.errno in _FULL and exc.filename is None:
        # "[Errno 27] File too large" from a library's own write (Lightning's checkpoint) said neither why nor where
        return (
            f"{exc.strerror}: a write stopped at a file size limit or a full disk (the library writing it did not "
            "name the file); free space or raise the limit (ulimit -f), and run the command again"
        )
    return str(exc)


_FULL = (errno.EFBIG, errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))
