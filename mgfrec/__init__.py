"""mgfrec: reasoning recommenders that think inside the real item space (MGFRec)."""

import logging as _logging
import sys as _sys

__version__ = "0.1.0"


class _DeepSpeedToStderr(_logging.Filter):
    """DeepSpeed logs to stdout, which ``--json`` and a library user's own output own, and transformers imports
    it whenever it is installed (saving a policy does: ``save_pretrained`` unwraps the model through
    accelerate); on a machine without a GPU every import also warns that no accelerator was found. This filter,
    set on DeepSpeed's logger before DeepSpeed creates it (its setup keeps filters), drops that warning and
    points DeepSpeed's own stdout handler at stderr; every other record goes on to the logger's handlers, a
    library user's own included. It is set when mgfrec is imported, so the tools and the Python API get it as
    the CLI does."""

    def filter(self, record: _logging.LogRecord) -> bool:
        if "unable to detect" in record.getMessage():
            return False
        for handler in _logging.getLogger("DeepSpeed").handlers:
            stream = getattr(handler, "stream", None)
            if isinstance(handler, _logging.StreamHandler) and stream in (_sys.stdout, _sys.__stdout__):
                handler.setStream(_sys.stderr)
        return True


if not any(type(f).__name__ == "_DeepSpeedToStderr" for f in _logging.getLogger("DeepSpeed").filters):
    _logging.getLogger("DeepSpeed").addFilter(_DeepSpeedToStderr())
