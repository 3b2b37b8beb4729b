"""Names given to `mgrb reproduce`: a glob, a name, or the experiment's file name; a name that
matches nothing is one message with the closest name (as `mgrb run` gives)."""

from pathlib import Path

import pytest

from mgrb.errors import MGRBError
from mgrb.pipeline.reproduce import _choose

AVAILABLE = {name: (Path(f"experiments/{name}.yaml"), name)
             for name in ("c100_ont_10_10", "c100_vis_10_10", "digits_5_1")}


def test_globs_names_and_file_names_choose_experiments():
    assert _choose(AVAILABLE, ["c100_*"], Path("experiments")) == [
        AVAILABLE["c100_ont_10_10"], AVAILABLE["c100_vis_10_10"]]
    assert _choose(AVAILABLE, ["digits_5_1.yml", "digits_5_1"], Path("x")) == [
        AVAILABLE["digits_5_1"]]
    assert _choose(AVAILABLE, ["experiments/digits_5_1.yaml"], Path("x")) == [
        AVAILABLE["digits_5_1"]]


def test_a_name_that_matches_nothing_says_the_closest():
    with pytest.raises(MGRBError) as error:
        _choose(AVAILABLE, ["digits_5_2"], Path("experiments"))
    message = str(error.value)
    assert message.startswith("digits_5_2: matches no experiment in experiments/ (did you mean "
                              "digits_5_1?)")
    assert "EXPERIMENTS=" not in message
