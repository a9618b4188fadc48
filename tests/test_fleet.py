"""The fleet in a release (issue 24), on `fleetrel.testing.FakeIoT`: device counts, the
`devices:` selector, the guard, and what the journal says of them. The same over HTTP
against the emulator's fleet is in tests/test_fleet_http.py."""
from __future__ import annotations

import json
from pathlib import Path

import anyio
import pytest

from fleetrel import RunOptions, Where
from fleetrel.api import run
from fleetrel.fleet import MAX_BUCKETS, Distribution, FleetUnavailable, distributions
from fleetrel.fleetcheck import FleetRefused
from fleetrel.plan import PlanError, ReleasePlan
from fleetrel.plan.selectors import Select, VersionFacts, match_package
from fleetrel.testing import FakeIoT

VERSIONS = {f"fw/{v}": "PUBLISHED" for v in ("1.0", "1.1", "1.2", "2.0", "2.1")}
DEVICES = {"fw/1.0": 0, "fw/1.1": 3, "fw/2.0": 40, "fw/2.1": 900}  # 1.2: no thing at all


def plan_of(data: dict) -> ReleasePlan:
    return ReleasePlan.model_validate({"plan": "fleet", **data})


def header(journal: Path) -> dict:
    return json.loads(journal.read_text().splitlines()[0])


def deprecate(*versions: str, **extra) -> ReleasePlan:
    return plan_of({"versions": [{"package": "fw", "versions": list(versions), "action": "DEPRECATE"}], **extra})


def test_one_aggregation_per_package_whatever_the_versions():
    iot = FakeIoT(VERSIONS, devices={**DEVICES, "other/9": 5})
    found = anyio.run(lambda: distributions(iot, ["fw", "other", "fw"]))
    assert iot.aggregations == {"fw": 1, "other": 1}
    assert found["fw"].counts == {"2.1": 900, "2.0": 40, "1.1": 3}
    assert [found["fw"].count(v) for v in ("1.0", "1.2", "2.1")] == [0, 0, 900]
    assert found["fw"].share("2.0") == pytest.approx(40 / 943)


def test_an_answer_cut_at_the_bucket_limit_leaves_the_rest_unknown():
    cut = Distribution("fw", {f"{n}.0": 1 for n in range(MAX_BUCKETS)}, complete=False)
    assert cut.count("0.0") == 1 and cut.count("99999.0") is None and cut.share("99999.0") is None


def test_indexing_off_says_how_to_turn_it_on():
    with pytest.raises(FleetUnavailable, match=r"ResourceNotFoundException.*turn fleet indexing on with the \$package named shadow"):
        anyio.run(lambda: distributions(FakeIoT(VERSIONS), ["fw"]))


def test_devices_filter_is_inclusive_and_never_takes_an_unknown_count():
    select = Select.model_validate({"package": "fw", "devices": {"max": 3}})
    facts = [VersionFacts("1.0", "PUBLISHED", devices=0), VersionFacts("1.1", "PUBLISHED", devices=3),
             VersionFacts("2.0", "PUBLISHED", devices=4), VersionFacts("2.1", "PUBLISHED", devices=None)]
    found = match_package(select, "fw", facts)
    assert found.matched == ["1.0", "1.1"]
    assert found.outside_devices == ["2.0", "2.1"] and found.devices["2.1"] is None
    at_least = match_package(Select.model_validate({"package": "fw", "devices": {"min": 3}}), "fw", facts)
    assert at_least.matched == ["1.1", "2.0"]


@pytest.mark.parametrize("bad", [{}, {"min": 5, "max": 1}, {"max": -1}, {"max": "0"}, {"most": 0}])
def test_devices_filter_refuses_what_cannot_mean_anything(bad):
    with pytest.raises(Exception):
        plan_of({"versions": [{"select": {"package": "fw", "devices": bad}, "action": "DEPRECATE"}]})


def test_a_devices_selector_deprecates_exactly_the_versions_no_thing_runs(tmp_path):
    iot = FakeIoT(VERSIONS, devices=DEVICES)
    plan = plan_of({"versions": [{"select": {"package": "fw", "status": "PUBLISHED", "below": "2.1",
                                             "devices": {"max": 0}}, "action": "DEPRECATE"}]})
    journal = tmp_path / "j.jsonl"
    result = anyio.run(lambda: run(plan, Where(journal_path=journal), client=iot))
    assert result.succeeded == 2
    assert sorted(k for k, n in iot.applied.items() if n) == ["fw/1.0", "fw/1.2"]
    # the counts seen at expansion are frozen with the selection: the evidence of the decision
    frozen = header(journal)["selection"][0]["packages"][0]
    assert frozen["matched"] == ["1.0", "1.2"]
    assert frozen["devices"] == {"1.0": 0, "1.1": 3, "1.2": 0, "2.0": 40, "2.1": 900}
    assert frozen["outside_devices"] == ["1.1", "2.0"]
    assert iot.aggregations == {"fw": 1}


def test_the_guard_refuses_before_anything_is_sent(tmp_path):
    iot = FakeIoT(VERSIONS, devices=DEVICES)
    plan = deprecate("1.0", "1.1", "2.0", guard={"deprecate_max_devices": 2})
    journal = tmp_path / "j.jsonl"
    with pytest.raises(FleetRefused) as refused:
        anyio.run(lambda: run(plan, Where(journal_path=journal), client=iot))
    message = str(refused.value)
    assert "fw/1.1 is run by 3 devices" in message and "fw/2.0 is run by 40 devices" in message
    assert "fw/1.0" not in message
    assert sum(iot.calls.values()) == 0 and not journal.exists()


def test_the_command_line_limit_overrides_the_plans(tmp_path):
    iot = FakeIoT(VERSIONS, devices=DEVICES)
    plan = deprecate("1.1", guard={"deprecate_max_devices": 5})
    with pytest.raises(FleetRefused, match="fw/1.1 is run by 3 devices"):
        anyio.run(lambda: run(plan, Where(journal_path=tmp_path / "j.jsonl"), client=iot,
                              options=RunOptions(guard_max_devices=0)))
    assert sum(iot.calls.values()) == 0


def test_allow_in_use_is_journalled_with_the_counts_it_overrode(tmp_path):
    iot = FakeIoT(VERSIONS, devices=DEVICES)
    journal = tmp_path / "j.jsonl"
    result = anyio.run(lambda: run(deprecate("1.0", "2.0", guard={"deprecate_max_devices": 0}),
                                   Where(journal_path=journal), client=iot, options=RunOptions(allow_in_use=True)))
    assert result.succeeded == 2
    check = header(journal)["fleet_check"]
    assert check["allow_in_use"] is True and check["limit"] == 0 and check["checked"] == 2
    assert check["in_use"] == [{"target": None, "package": "fw", "version": "2.0", "devices": 40}]


def test_indexing_off_stops_a_guarded_run_and_no_fleet_check_goes_on_journalled(tmp_path):
    plan = deprecate("1.0", guard={"deprecate_max_devices": 0})
    iot = FakeIoT(VERSIONS)  # fleet indexing off
    with pytest.raises(FleetUnavailable, match="--no-fleet-check"):
        anyio.run(lambda: run(plan, Where(journal_path=tmp_path / "j.jsonl"), client=iot))
    assert sum(iot.calls.values()) == 0
    journal, told = tmp_path / "k.jsonl", []
    result = anyio.run(lambda: run(plan, Where(journal_path=journal), client=iot, notice=told.append,
                                   options=RunOptions(fleet_check=False)))
    assert result.succeeded == 1 and iot.aggregations == {"fw": 1}  # the one refused read above, none since
    assert told == ["--no-fleet-check: the fleet guard (at most 0 devices) is not applied to this run's DEPRECATE steps"]
    assert header(journal)["fleet_check"] == {"limit": 0, "allow_in_use": False, "skipped": True}


def test_without_a_guard_a_run_reads_nothing_from_the_fleet(tmp_path):
    iot = FakeIoT(VERSIONS, devices=DEVICES)
    anyio.run(lambda: run(deprecate("2.0"), Where(journal_path=tmp_path / "j.jsonl"), client=iot))
    assert not iot.aggregations and "fleet_check" not in header(tmp_path / "j.jsonl")


def test_no_fleet_check_makes_a_devices_selector_match_nothing_and_says_so(tmp_path):
    iot = FakeIoT(VERSIONS)
    plan = plan_of({"versions": [{"select": {"package": "fw", "devices": {"max": 0}}, "action": "DEPRECATE"}]})
    with pytest.raises(FleetUnavailable):
        anyio.run(lambda: run(plan, Where(journal_path=tmp_path / "j.jsonl"), client=iot))
    told: list[str] = []
    journal = tmp_path / "k.jsonl"
    result = anyio.run(lambda: run(plan, Where(journal_path=journal), client=iot, notice=told.append,
                                   options=RunOptions(fleet_check=False)))
    assert result.steps == 0 and sum(iot.calls.values()) == 0
    assert any("--no-fleet-check" in line for line in told)
    assert header(journal)["fleet_check"] == {"skipped": True, "devices_filter_unread": True}


def test_a_resume_guards_only_the_steps_it_still_sends(tmp_path):
    """A version deprecated under --allow-in-use is not refused again by a resume without it."""
    iot = FakeIoT(VERSIONS, devices=DEVICES)
    journal = tmp_path / "j.jsonl"
    plan = deprecate("2.0", "1.0", guard={"deprecate_max_devices": 0}, waves=[1])

    async def no(wave: int, waves: int) -> bool:  # the operator stops the run after wave 1
        return False

    first = anyio.run(lambda: run(plan, Where(journal_path=journal), client=iot, before_wave=no,
                                  options=RunOptions(allow_in_use=True)))
    assert first.succeeded == 1 and first.unfinished == 1  # 2.0, which 40 devices run, is deprecated
    second = anyio.run(lambda: run(plan, Where(journal_path=journal), client=iot))
    assert second.succeeded == 2
    resumed = [json.loads(line) for line in journal.read_text().splitlines() if '"run_resumed"' in line]
    assert resumed[-1]["fleet_check"]["in_use"] == [] and resumed[-1]["fleet_check"]["checked"] == 1


def test_status_says_what_the_guard_saw_and_what_overrode_it(tmp_path):
    from fleetrel.replay import replay
    from fleetrel.report import fleet_check_line, journal_status

    iot = FakeIoT(VERSIONS, devices=DEVICES)
    journal = tmp_path / "j.jsonl"
    anyio.run(lambda: run(deprecate("1.0", "2.0", guard={"deprecate_max_devices": 0}),
                          Where(journal_path=journal), client=iot, options=RunOptions(allow_in_use=True)))
    [check] = journal_status(replay(journal))["fleet_checks"]
    assert check["in_use"][0]["version"] == "2.0"
    line = fleet_check_line(check)
    assert "2 DEPRECATE step(s) counted against at most 0 devices" in line and "by --allow-in-use: fw/2.0 (40)" in line


def test_a_devices_selector_and_the_guard_read_each_package_once(tmp_path):
    iot = FakeIoT(VERSIONS, devices=DEVICES)
    plan = plan_of({"guard": {"deprecate_max_devices": 0},
                    "versions": [{"select": {"package": "fw", "below": "2.0", "devices": {"max": 0}}, "action": "DEPRECATE"},
                                 {"package": "fw", "version": "2.1", "action": "PUBLISH"}]})
    result = anyio.run(lambda: run(plan, Where(journal_path=tmp_path / "j.jsonl"), client=iot))
    assert result.succeeded == 2 and iot.aggregations == {"fw": 1}


def test_the_html_report_draws_the_devices_per_version_and_marks_what_was_deprecated(tmp_path):
    import io

    from fleetrel.htmlreport import write_html

    iot = FakeIoT(VERSIONS, devices=DEVICES)
    journal = tmp_path / "j.jsonl"
    plan = plan_of({"guard": {"deprecate_max_devices": 5},
                    "versions": [{"select": {"package": "fw", "below": "2.0", "devices": {"max": 0}}, "action": "DEPRECATE"},
                                 {"package": "fw", "version": "1.1", "action": "DEPRECATE"}]})
    anyio.run(lambda: run(plan, Where(journal_path=journal), client=iot))
    page = io.StringIO()
    write_html(journal, page)
    html = page.getvalue()
    assert '<svg id="fleet-fw"' in html
    deprecated = [line for line in html.split("<rect") if 'class="deprecated"' in line]
    assert sorted(part.split("<title>")[1].split(":")[0] for part in deprecated) == ["1.0", "1.1", "1.2"]
    assert html.count('class="devices"') == 2  # 2.0 and 2.1, left alone


def test_with_indexing_off_a_preview_asks_once_per_target_not_once_per_package():
    from fleetrel.fleet import FleetUnavailable

    iot = FakeIoT({**VERSIONS, "app/1.0": "PUBLISHED", "cam/1.0": "PUBLISHED"})  # indexing off
    failures: list[FleetUnavailable] = []
    found = anyio.run(lambda: distributions(iot, ["fw", "app", "cam"], failures=failures, concurrency=1))
    assert found == {} and len(failures) == 1 and sum(iot.aggregations.values()) == 1
    assert failures[0].short() == "fleet indexing is off (see docs/fleet.md)"
