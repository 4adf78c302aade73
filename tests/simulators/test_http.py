import httpx
import pytest

from simulators.http import DropConnection, Request, Response, Router, SimulatorServer


@pytest.fixture
def server():  # type: ignore[no-untyped-def]
    router = Router()

    @router.route("GET", r"/items/(?P<item>[^/]+)", name="get item")
    def get_item(request: Request) -> Response:
        return Response(200, {"item": request.params["item"], "q": request.query.get("q")})

    @router.route("POST", r"/items", name="create item")
    def create(request: Request) -> Response:
        return Response(201, {"echo": request.json()})

    @router.route("POST", r"/lost", name="lost")
    def lost(request: Request) -> Response:
        raise DropConnection

    @router.route("GET", r"/boom", name="boom")
    def boom(request: Request) -> Response:
        raise RuntimeError("bug")

    with SimulatorServer(router) as running:
        yield running


def test_routes_decode_and_count(server: SimulatorServer) -> None:
    with httpx.Client(base_url=server.url) as client:
        answer = client.get("/items/a%20b", params={"q": "x y"})
        assert answer.json() == {"item": "a b", "q": "x y"}
        assert client.post("/items", json={"n": 1}).json() == {"echo": {"n": 1}}
        assert client.get("/nowhere").status_code == 404
        assert client.delete("/items/a").status_code == 405
        assert client.get("/boom").status_code == 500
    assert server.router.counts == {"get item": 1, "create item": 1, "boom": 1}
    assert server.url.startswith("http://127.0.0.1:")


def test_dropped_connection_gives_the_client_no_answer(server: SimulatorServer) -> None:
    with httpx.Client(base_url=server.url) as client, pytest.raises(httpx.TransportError):
        client.post("/lost", json={})
    assert server.router.counts["lost"] == 1
