"""The CLI's shared helpers (mgfrec/cli/common.py)."""

from __future__ import annotations


def test_a_negative_zero_score_is_shown_as_zero():
    # recommend's table showed the answered item's -0.0 distance as -0.0000
    from mgfrec.cli.common import shown_score

    assert [shown_score(v) for v in (-0.0, -0.00004, 0.5, -0.25)] == ["0.0000", "0.0000", "0.5000", "-0.2500"]


def test_a_set_retriever_model_beside_a_recall_run_gets_a_note(capsys):
    # fit --init and sft --recall-run took --set retriever.model, overwrote it with the recall run's model, and
    # said nothing: the user believed the run ranked with the model they named
    from mgfrec.cli.common import note_overridden_recall_model

    note_overridden_recall_model(["retriever.recall_size=10", "retriever.model = bpr"], "--recall-run r/sas")
    text = " ".join(capsys.readouterr().err.split())
    assert text == (
        "note: --set retriever.model = bpr: not used; the recall lists come from --recall-run r/sas, "
        "and config.yaml records its model"
    )
    note_overridden_recall_model(["retriever.recall_size=10", "retriever.models=x"], "--init r")
    assert capsys.readouterr().err == ""
