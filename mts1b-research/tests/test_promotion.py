"""The promotion rule and the life-cycle table, without a database."""

from __future__ import annotations

import itertools
import math

import pytest
from mts1b_foundation import StrategyState
from mts1b_research.errors import ResearchInputError, TransitionRefused
from mts1b_research.promotion import MinimumEvidence, PromotionEvidence, RuleVerdict
from mts1b_research.registry_states import Requirement, check_transition

S = StrategyState
FREE, RULE, RULE_RISK, RISK = (Requirement(), Requirement(rule=True),
                               Requirement(rule=True, risk=True), Requirement(risk=True))

# Written out by hand from the issue, not derived from the module's table.
ALLOWED: dict[tuple[S, S], Requirement] = {
    (S.DRAFT, S.SHADOW): FREE,
    (S.SHADOW, S.PAPER): RULE,
    (S.PAPER, S.LIVE): RULE_RISK,
    (S.DRAFT, S.DISABLED): FREE, (S.SHADOW, S.DISABLED): FREE,
    (S.PAPER, S.DISABLED): FREE, (S.LIVE, S.DISABLED): FREE,
    (S.DISABLED, S.DRAFT): FREE, (S.DISABLED, S.SHADOW): FREE,
    (S.DISABLED, S.PAPER): FREE, (S.DISABLED, S.LIVE): RISK,
    (S.DRAFT, S.RETIRED): FREE, (S.SHADOW, S.RETIRED): FREE, (S.PAPER, S.RETIRED): FREE,
    (S.LIVE, S.RETIRED): FREE, (S.DISABLED, S.RETIRED): FREE,
}
REMEMBERED = [None, S.DRAFT, S.SHADOW, S.PAPER, S.LIVE]


@pytest.mark.parametrize(("source", "target", "remembered"),
                         list(itertools.product(S, S, REMEMBERED)))
def test_every_pair_of_states_against_the_table(source: S, target: S,
                                                remembered: S | None) -> None:
    expected = ALLOWED.get((source, target))
    if source is S.DISABLED and target is not S.RETIRED and target is not remembered:
        expected = None  # enabling goes back to the remembered state only
    if expected is None:
        with pytest.raises(TransitionRefused) as refused:
            check_transition(source, target, remembered=remembered, strategy="m")
        assert refused.value.context["from_state"] == source.value
        assert refused.value.context["to_state"] == target.value
        assert source.value in refused.value.message and target.value in refused.value.message
    else:
        assert check_transition(source, target, remembered=remembered) == expected


def test_retired_is_final_and_says_so() -> None:
    with pytest.raises(TransitionRefused, match="retired is final"):
        check_transition(S.RETIRED, S.DRAFT)


def test_minimum_evidence_lists_every_unmet_condition() -> None:
    rule = MinimumEvidence(min_sessions=20, min_ic=0.02, min_t_stat=2.0)
    verdict = rule(PromotionEvidence(sessions=5, mean_ic=0.01, t_stat=None))
    assert not verdict.ok
    assert verdict.reasons == ["sessions 5 is fewer than 20",
                               "mean IC 0.01 is below the floor 0.02",
                               "t-stat is unknown; the rule needs at least 2"]


def test_minimum_evidence_passes_and_says_what_it_checked() -> None:
    verdict = MinimumEvidence(20, min_ic=0.02)(PromotionEvidence(20, mean_ic=0.02, t_stat=0.1))
    assert verdict == RuleVerdict(True, ["sessions 20 >= 20", "mean IC 0.02 >= 0.02"])


def test_sessions_alone_by_default() -> None:
    rule = MinimumEvidence(min_sessions=3)
    assert rule(PromotionEvidence(3)).ok
    assert not rule(PromotionEvidence(2)).ok


@pytest.mark.parametrize(("field", "kwargs"), [
    ("sessions", {"sessions": -1}),
    ("sessions", {"sessions": True}),
    ("mean_ic", {"sessions": 1, "mean_ic": math.nan}),
    ("t_stat", {"sessions": 1, "t_stat": math.inf}),
    ("hit_rate", {"sessions": 1, "hit_rate": 1.5}),
])
def test_bad_evidence_names_its_field(field: str, kwargs: dict[str, object]) -> None:
    with pytest.raises(ResearchInputError) as bad:
        PromotionEvidence(**kwargs)  # type: ignore[arg-type]
    assert bad.value.context["field"] == field


def test_a_nan_floor_is_refused() -> None:
    with pytest.raises(ResearchInputError) as bad:
        MinimumEvidence(1, min_ic=math.nan)
    assert bad.value.context["field"] == "min_ic"


def test_a_user_written_rule_is_any_callable() -> None:
    def strict(evidence: PromotionEvidence) -> RuleVerdict:
        ok = evidence.hit_rate is not None and evidence.hit_rate > 0.55
        return RuleVerdict(ok, [] if ok else ["hit rate must exceed 55%"])

    assert strict(PromotionEvidence(1, hit_rate=0.6)).ok
    assert strict(PromotionEvidence(1)).reasons == ["hit rate must exceed 55%"]
