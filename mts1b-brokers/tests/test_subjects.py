"""The service's subjects come from the foundation's registry, not from string formatting."""

from __future__ import annotations

import pytest
from mts1b_brokers.service import account_subject, command_subject, execution_subject
from mts1b_foundation import AccountSnapshot, ExecutionReport, SubjectError, model_for_subject


def test_subjects_are_registered_with_the_models_they_carry() -> None:
    assert account_subject("paper") == "mts.v1.brokers.paper.account"
    assert model_for_subject(account_subject("paper")) is AccountSnapshot
    assert model_for_subject(execution_subject("paper")) is ExecutionReport
    assert command_subject("paper", "submit") == "mts.v1.brokers.paper.submit"


@pytest.mark.parametrize(("broker", "command"), [
    ("paper", "explode"),       # no such broker command in the registry
    ("two words", "submit"),    # a broker name that cannot be a subject token
])
def test_a_subject_the_registry_does_not_know_is_refused(broker: str, command: str) -> None:
    with pytest.raises(SubjectError) as info:
        command_subject(broker, command)
    assert info.value.context["field"] == "subject"
    assert broker in info.value.message
