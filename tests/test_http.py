"""The shared HTTP session: bounded retries on 429/5xx/connection errors only, over real sockets."""

import socket

import pytest

from pipeline.errors import AuthError, RateLimitedError, ServiceError
from pipeline.http import HttpClient, Pacer, retry_after_seconds
from pipeline.sandbox.server import Response, SandboxServer, json_response


@pytest.fixture()
def server():
    srv = SandboxServer().start()
    yield srv
    srv.stop()


def scripted(srv: SandboxServer, path: str, responses: list[Response]) -> None:
    queue = list(responses)
    srv.router.add("GET", path, lambda request: queue.pop(0) if len(queue) > 1 else queue[0])


def client(srv: SandboxServer, sleeps: list[float], **kw) -> HttpClient:
    return HttpClient(service="Test", base_url=srv.url, sleep=sleeps.append, **kw)


def test_429_is_retried_after_the_servers_retry_after(server) -> None:
    scripted(server, "/x", [json_response(429, {"message": "30 per 1 minute"},
                                          {"Retry-After": "7"}),
                            json_response(200, {"ok": True})])
    sleeps: list[float] = []
    assert client(server, sleeps).request("GET", "/x", stage="t").json() == {"ok": True}
    assert sleeps == [7.0]
    assert len(server.requests("GET", "/x")) == 2


def test_retry_after_on_a_200_is_ignored_and_5xx_backs_off(server) -> None:
    scripted(server, "/x", [json_response(502, {"message": "bad gateway"}, {"Retry-After": "60"}),
                            json_response(200, {}, {"Retry-After": "60"})])
    sleeps: list[float] = []
    client(server, sleeps, backoff=0.5).request("GET", "/x", stage="t")
    assert sleeps == [0.5]


def test_client_errors_are_not_retried_and_say_what_went_wrong(server) -> None:
    scripted(server, "/x", [json_response(400, {
        "status": 400, "message": "A validation error occurred.",
        "errors": [{"field": "metadata.title",
                    "messages": ["Missing data for required field."]}]})])
    sleeps: list[float] = []
    with pytest.raises(ServiceError) as info:
        client(server, sleeps).request("GET", "/x", stage="publish", record="42")
    text = str(info.value)
    assert "[publish] record 42" in text and "HTTP 400" in text
    assert "metadata.title: Missing data for required field." in text
    assert server.url + "/x" in text
    assert sleeps == []


def test_retry_budget_is_bounded_and_401_names_the_token(server) -> None:
    scripted(server, "/busy", [json_response(429, {"message": "slow down"}, {"Retry-After": "1"})])
    sleeps: list[float] = []
    with pytest.raises(RateLimitedError):
        client(server, sleeps, retries=2).request("GET", "/busy", stage="t")
    assert len(server.requests("GET", "/busy")) == 3 and sleeps == [1.0, 1.0]
    scripted(server, "/auth", [json_response(401, {"message": "not authorized"})])
    with pytest.raises(AuthError) as info:
        client(server, [], token="s3cret-token-value").request("GET", "/auth", stage="t")
    assert "token" in str(info.value) and "s3cret-token-value" not in str(info.value)


def test_connection_errors_are_retried_then_reported() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sleeps: list[float] = []
    http = HttpClient(service="Nowhere", base_url=f"http://127.0.0.1:{port}", retries=2,
                      sleep=sleeps.append, timeout=(0.5, 0.5))
    with pytest.raises(ServiceError) as info:
        http.request("GET", "/", stage="t")
    assert "unreachable after 3 attempts" in str(info.value)
    assert sleeps == [1.0, 2.0]


def test_pacer_spaces_calls_by_the_rate_limit() -> None:
    now = [0.0]
    slept: list[float] = []

    def sleep(d: float) -> None:
        slept.append(d)
        now[0] += d

    pacer = Pacer(30, sleep=sleep, clock=lambda: now[0])
    for _ in range(3):
        pacer.wait()
    assert slept == [2.0, 2.0]


def test_retry_after_accepts_seconds_and_http_dates() -> None:
    assert retry_after_seconds("12") == 12.0
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412480) == 10.0
    assert retry_after_seconds("soon") is None


def test_the_token_goes_only_to_the_clients_own_origin() -> None:
    from pipeline.http import same_origin

    assert same_origin("https://zenodo.org/api/records/1/files/a.zip/content",
                       "https://zenodo.org")
    assert same_origin("https://zenodo.org:443/x", "https://zenodo.org/")
    assert not same_origin("https://zenodo.org.evil.example/x", "https://zenodo.org")
    assert not same_origin("http://zenodo.org/x", "https://zenodo.org")
    assert not same_origin("https://127.0.0.1:8001/x", "https://127.0.0.1:8000")


def test_a_json_answer_is_bounded_in_size_and_must_be_an_object(server) -> None:
    from pipeline.errors import ForeignDataError

    scripted(server, "/big", [json_response(200, {"pad": "x" * 5000})])
    scripted(server, "/list", [json_response(200, [1, 2, 3])])
    http = client(server, [])
    with pytest.raises(ForeignDataError, match="larger than expected"):
        http.request_json("GET", "/big", stage="detect", max_bytes=1000)
    with pytest.raises(ForeignDataError, match="JSON of the wrong kind") as info:
        http.request_json("GET", "/list", stage="detect", record="7")
    assert str(info.value).startswith("[detect] record 7:") and "a JSON list" in str(info.value)
