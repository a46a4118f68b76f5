"""The CLI's shared helpers (mgfrec/cli/common.py)."""

from __future__ import annotations

import pytest


def test_a_negative_zero_score_is_shown_as_zero():
    # recommend's table showed the answered item's -0.0 distance as -0.0000
    from mgfrec.cli.common import shown_score

    assert [shown_score(v) for v in (-0.0, -0.00004, 0.5, -0.25)] == ["0.0000", "0.0000", "0.5000", "-0.2500"]


def test_a_set_retriever_model_or_options_beside_a_recall_run_gets_a_note_and_is_left_out(capsys):
    # fit --init and sft --recall-run took --set retriever.model, overwrote it with the recall run's model, and
    # said nothing: the user believed the run ranked with the model they named. Its options were checked against
    # the config's model: the recall run's own options (a hybrid's tune_metric) were refused
    from mgfrec.cli.common import unused_recall_sets

    given = ["retriever.recall_size=10", "retriever.model = bpr", "retriever.options.tune_metric=hit@10"]
    assert unused_recall_sets(given, "--recall-run r/sas") == ["retriever.recall_size=10"]
    text = " ".join(capsys.readouterr().err.split())
    assert text == (
        "note: --set retriever.model = bpr retriever.options.tune_metric=hit@10: not used; the recall lists come "
        "from --recall-run r/sas, and config.yaml records its model and options"
    )
    kept = ["retriever.recall_size=10", "retriever.models=x", "retriever.optionsx=1"]
    assert unused_recall_sets(kept, "--init r") == kept
    assert capsys.readouterr().err == ""


def test_a_failed_allocation_is_one_line_and_other_runtime_errors_pass(capsys):
    """A data set prepared with --history-length 2147483647 made SASRec allocate 550 GB: a torch traceback."""
    import pytest
    import typer

    from mgfrec.cli.common import run

    def allocate():
        raise RuntimeError(
            "[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: can't allocate memory: you tried to "
            "allocate 549755813632 bytes. Error code 12 (Cannot allocate memory)"
        )

    with pytest.raises(typer.Exit) as stop:
        run(allocate)
    text = " ".join(capsys.readouterr().err.split())
    assert stop.value.exit_code == 1 and text.startswith("error: out of memory ([enforce fail"), text
    assert "549755813632 bytes" in text and "--history-length" in text and "Traceback" not in text
    with pytest.raises(typer.Exit):
        run(lambda: [0] * (1 << 62))  # Python's own MemoryError
    assert capsys.readouterr().err.startswith("error: out of memory (MemoryError)")

    def other():
        raise RuntimeError("a bug, not a user error")

    with pytest.raises(RuntimeError, match="a bug"):
        run(other)


def test_a_history_of_invisible_characters_or_not_utf8_is_refused_naming_the_flag():
    """``--history $'\\u200b'`` was grounded to an arbitrary catalogue item; bytes that are not UTF-8 were named
    "title" once the model had loaded (review s30)."""
    from mgfrec.cli.common import check_history

    for blank in ("\u200b", "\ufeff ; \u0000", " ; ;", "\u3164", "\u2800 ; \u115f"):
        with pytest.raises(ValueError, match=r"^--history: give at least one title"):
            check_history(blank)
    with pytest.raises(ValueError, match=r"^--history: not valid UTF-8 text \(character 4\)"):
        check_history("caf\udce9")
    check_history("\u200bAbbey Road")  # a title with an invisible character beside text is a title
    check_history(None)
