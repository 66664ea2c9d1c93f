"""V(x) = sum over components of weight * sum(r ** 2), and the --energy-weights parser."""

from __future__ import annotations

import pytest

from keel.engine.energy import measure, parse_weights
from keel.engine.models import Component, EnergyWeights, Residual, SensorReport

WEIGHTS = EnergyWeights(syn=3.0, str=0.25, log=5.0, boot=7.0, sheaf=11.0)


def _residual(component: Component, magnitude: float = 1.0) -> Residual:
    return Residual(component, f"{component.value} problem", "test", magnitude=magnitude)


def test_each_component_is_its_weight_times_the_sum_of_squares() -> None:
    reports = [
        SensorReport("checker", (_residual(Component.SYN, 1.0), _residual(Component.SYN, 0.5))),
        SensorReport("contract", (_residual(Component.STR, 2.0),)),
        SensorReport("tests", (_residual(Component.LOG, 1.0),) * 3),
        SensorReport("commands", (_residual(Component.BOOT, 0.1),)),
    ]
    energy = measure(reports, WEIGHTS)

    assert energy.components[Component.SYN] == pytest.approx(3.0 * (1.0 + 0.25))
    assert energy.components[Component.STR] == pytest.approx(0.25 * 4.0)
    assert energy.components[Component.LOG] == pytest.approx(5.0 * 3.0)
    assert energy.components[Component.BOOT] == pytest.approx(7.0 * 0.01)
    assert energy.components[Component.SHEAF] == 0.0
    assert energy.total == pytest.approx(3.75 + 1.0 + 15.0 + 0.07)
    assert energy.as_dict() == {
        "v_syn": 3.75,
        "v_str": 1.0,
        "v_log": 15.0,
        "v_boot": 0.07,
        "v_sheaf": 0.0,
        "v": 19.82,
    }


def test_residuals_of_one_component_add_across_sensors() -> None:
    reports = [
        SensorReport("ty", (_residual(Component.SYN),)),
        SensorReport("editor", (_residual(Component.SYN),)),
    ]
    assert measure(reports, WEIGHTS).components[Component.SYN] == pytest.approx(6.0)


def test_evidence_keeps_every_residual_in_order() -> None:
    first, second = _residual(Component.LOG), _residual(Component.SYN, 0.3)
    energy = measure([SensorReport("a", (first,)), SensorReport("b", (second,))], WEIGHTS)
    assert energy.evidence == (first, second)


def test_no_residuals_is_zero_energy_and_stable() -> None:
    energy = measure([SensorReport("ty"), SensorReport("pytest")], EnergyWeights())
    assert energy.total == 0.0
    assert energy.stable(0.1)


@pytest.mark.parametrize("component", list(Component))
def test_a_single_error_in_any_component_blocks_with_default_weights(
    component: Component,
) -> None:
    energy = measure([SensorReport("s", (_residual(component),))], EnergyWeights())
    assert energy.total >= 0.1
    assert not energy.stable(0.1)


def test_a_single_warning_in_syn_alone_does_not_block() -> None:
    energy = measure([SensorReport("ty", (_residual(Component.SYN, 0.3),))], EnergyWeights())
    assert energy.total == pytest.approx(0.09)
    assert energy.stable(0.1)


def test_a_degraded_sensor_is_never_stable_even_at_zero_energy() -> None:
    energy = measure([SensorReport("ty", degraded=True, detail="ty not found")], EnergyWeights())
    assert energy.total == 0.0
    assert energy.degraded_sensors == ("ty",)
    assert not energy.stable(0.1)
    assert not energy.stable(1e9)


def test_stable_uses_the_epsilon_it_is_given() -> None:
    # STR weight 0.5 * 1 ** 2 = 0.5
    energy = measure([SensorReport("contract", (_residual(Component.STR),))], EnergyWeights())
    assert energy.total == pytest.approx(0.5)
    assert energy.stable(1.0)
    assert not energy.stable(0.1)
    assert not energy.stable(0.5)  # strictly below epsilon


def test_parse_weights_with_three_values_keeps_the_other_defaults() -> None:
    assert parse_weights("3,4,5") == EnergyWeights(syn=3.0, str=4.0, log=5.0, boot=1.0, sheaf=1.0)


def test_parse_weights_with_five_values_sets_all() -> None:
    assert parse_weights("0.1, 0.2 ,0.3,0.4,0") == EnergyWeights(
        syn=0.1, str=0.2, log=0.3, boot=0.4, sheaf=0.0
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("1,2", "3 to 5 numbers"),
        ("1,2,3,4,5,6", "3 to 5 numbers"),
        ("1,-2,3", "must not be negative"),
        ("1,two,3", "must be numbers"),
        ("", "must be numbers"),
        ("1,,3", "must be numbers"),
        ("nan,1,1", "must be finite"),
        ("1,inf,1", "must be finite"),
        ("0,0,0,0,0", "must not all be zero"),
        ("0,0,0,0,-0", "must not all be zero"),
    ],
)
def test_parse_weights_rejects_bad_input(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_weights(text)


def test_zero_weights_switch_components_off_but_not_all_of_them() -> None:
    # Three zeros leave V_boot and V_sheaf at their defaults: still a working measure.
    assert parse_weights("0,0,0") == EnergyWeights(syn=0.0, str=0.0, log=0.0, boot=1.0, sheaf=1.0)
    assert parse_weights("0,0,0,0,0.5").sheaf == 0.5
