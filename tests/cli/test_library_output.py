"""``mgfrec.cli.quiet.library_output`` in-process: which library loggers it quiets (the subprocess tests of what a
command prints are in ``test_quiet.py``, marked slow)."""

from __future__ import annotations

import logging

import pytest

from mgfrec.cli.quiet import library_output


@pytest.mark.reliability
def test_huggingface_hubs_retry_warnings_are_hidden_unless_verbose(caplog):
    """An uncached hub model offline printed about 30 "... thrown while requesting HEAD ... Retrying in 8s" lines
    before the one line saying it could not be loaded (review s26)."""
    hub = logging.getLogger("huggingface_hub.utils._http")
    before = logging.getLogger("huggingface_hub").level
    with caplog.at_level(logging.DEBUG, logger="huggingface_hub.utils._http"):
        hub.setLevel(logging.NOTSET)  # the level caplog set on it would hide nothing from the parent's
        with library_output(verbose=False):
            hub.warning("quiet retry")
        with library_output(verbose=True):
            hub.warning("verbose retry")
    said = [r.getMessage() for r in caplog.records]
    assert "quiet retry" not in said and "verbose retry" in said
    assert logging.getLogger("huggingface_hub").level == before  # put back after the block


def test_the_hub_stays_quiet_when_it_is_first_imported_inside_the_block():
    """huggingface_hub sets its logger's level when first imported (by transformers, as the embedder loads inside
    the block): the level set on entry went back to WARNING, and ~30 retry warnings came through (review s30). The
    test above passed only because the hub was imported before its block."""
    import subprocess
    import sys

    code = (
        "import logging, sys\n"
        "from mgfrec.cli.quiet import library_output\n"
        "assert 'huggingface_hub' not in sys.modules\n"
        "with library_output(False):\n"
        "    import transformers\n"
        "    print(logging.getLogger('huggingface_hub.utils._http').getEffectiveLevel())\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(logging.ERROR), done.stdout
