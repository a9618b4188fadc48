import re

from fleetrel.plan import Step
from fleetrel.tokens import client_token

RUN_A = "0d9f6f0e-1111-4a4a-8888-000000000001"
RUN_B = "0d9f6f0e-1111-4a4a-8888-000000000002"


def test_token_fits_the_api_pattern():
    token = client_token(RUN_A, Step("fw", "1.0", "PUBLISH"))
    assert re.fullmatch(r"\S{36,64}", token)


def test_same_run_same_step_same_token():
    assert client_token(RUN_A, Step("fw", "1.0", "PUBLISH")) == client_token(RUN_A, Step("fw", "1.0", "PUBLISH", index=7))


def test_new_run_new_token():
    assert client_token(RUN_A, Step("fw", "1.0", "PUBLISH")) != client_token(RUN_B, Step("fw", "1.0", "PUBLISH"))


def test_different_request_different_token():
    a = client_token(RUN_A, Step("fw", "1.0", "PUBLISH", description="x"))
    b = client_token(RUN_A, Step("fw", "1.0", "PUBLISH", description="y"))
    c = client_token(RUN_A, Step("fw", "1.1", "PUBLISH", description="x"))
    assert len({a, b, c}) == 3
