"""`fleetrel.session.check_identity`: clients built again mid-session (a restarted Ray
actor) are checked against the places the session recorded, in a new run as in a resume."""
from __future__ import annotations

import pytest

from fleetrel.plan import load
from fleetrel.session import TargetChanged, check_identity, open_session
from test_targets import org_plan

HERE = {"account": "111111111111", "region": "us-east-1", "endpoint": "http://127.0.0.1:5000"}


def test_a_new_runs_target_coming_back_in_another_account_is_refused(tmp_path):
    plan = load(org_plan(tmp_path / "org.yaml", ["1.0"], pin={"dev": "111111111111"}))
    places = {"dev-us-east-1": HERE, "dev-eu-west-1": {**HERE, "region": "eu-west-1"}}
    with open_session(plan, tmp_path / "j.jsonl", identity=places) as session:
        assert session.prior is None
        check_identity(session, {"dev-us-east-1": dict(HERE)})  # the same place: fine
        with pytest.raises(TargetChanged, match="dev-us-east-1 .*222222222222"):
            check_identity(session, {"dev-us-east-1": {**HERE, "account": "222222222222"}})
        assert session.identity["dev-us-east-1"]["account"] == "111111111111"
