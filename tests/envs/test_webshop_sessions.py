"""WebShop sessions never vanish silently, and no client can crowd the shop out (issue 13, section 5).

Three classes of input: requests naming a session the shop does not hold (never started,
ended, expired), floods of new sessions (by GET or POST, with forged forwarding headers),
and clients that hold connections without completing a request (slow or huge).
"""

import gc
import http.server
import select
import socket
import threading
import time
import uuid
from typing import ClassVar
from wsgiref.util import setup_testing_defaults

import pytest

from regym.envs.webshop import HTTPClient, InProcessClient, WebShopApp, WebShopEnv, WebShopServer, shared_app
from regym.envs.webshop.instructions import make_goal
from regym.envs.webshop.text import parse_page


def _call(app, method, path, remote_addr, headers=None):
    """One WSGI call as the HTTP server makes it, from ``remote_addr``: (status code, page)."""
    path, _, query = path.partition("?")
    environ = {"REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": query, "REMOTE_ADDR": remote_addr}
    environ.update({f"HTTP_{k.upper().replace('-', '_')}": v for k, v in (headers or {}).items()})
    setup_testing_defaults(environ)
    status = []
    body = b"".join(app(environ, lambda line, headers, exc_info=None: status.append(line)))
    return int(status[0].split()[0]), parse_page(body.decode())


def _expert_episode(env, task_id):
    """Plays ``task_id`` with the expert; returns every observation and the last (reward, info)."""
    observation, info = env.reset(options={"task_id": task_id})
    observations = [observation]
    for _ in range(env.max_turns):
        observation, reward, terminated, truncated, info = env.step(info["expert_action"])
        observations.append(observation)
        if terminated or truncated:
            return observations, reward, info
    raise AssertionError("the expert did not finish")


def test_a_session_the_shop_does_not_hold_is_gone_on_every_route_never_restarted():
    app = WebShopApp(session_ttl_s=0.3)
    asin = app.catalog.products[0].asin
    name, values = next(iter(app.catalog.products[0].options.items()))
    routes = [
        ("GET", ""),
        ("GET", "/search?q=lamp"),
        ("GET", f"/item/{asin}"),
        ("GET", f"/item/{asin}/option?name={name}&value={values[0]}".replace(" ", "+")),
        ("GET", f"/item/{asin}/reviews"),
        ("POST", f"/buy/{asin}"),
        ("POST", "/end"),
    ]
    local = InProcessClient(app)
    assert local.request("GET", "/ended?task_id=id-00001").status == 200
    assert local.request("POST", "/ended/end").status == 200
    assert local.request("GET", "/idle?task_id=id-00002").status == 200
    time.sleep(0.4)
    with WebShopServer(app) as server:
        remote = HTTPClient(server.url)
        for client in (local, remote):
            for sid in ("never-started", "ended", "idle"):
                for method, route in routes:
                    response = client.request(method, f"/{sid}{route}")
                    assert response.status == 410, (sid, route)
                    assert "unknown or expired" in parse_page(response.html).text
    assert app.num_sessions == 0  # none of those requests started a session on some other goal


@pytest.mark.parametrize("backend", ["inprocess", "http"])
def test_an_env_whose_session_vanished_ends_its_episode_truncated_with_the_reason(backend):
    if backend == "inprocess":
        env, server = WebShopEnv(), None
        app = shared_app(env.catalog_seed)
    else:
        app = WebShopApp(session_ttl_s=0.5)
        server = WebShopServer(app).start()
        env = WebShopEnv(backend="http", server_url=server.url)
    try:
        observation, info = env.reset(options={"task_id": "id-00007"})
        observation, *_, info = env.step(info["expert_action"])
        sessions = app.num_sessions
        if backend == "inprocess":
            app.end_session(env.session_id)  # evicted, as the flood of issue 13 did
            sessions -= 1
        else:
            time.sleep(0.6)  # expired
        observation, reward, terminated, truncated, info = env.step(info["expert_action"])
        assert (reward, terminated, truncated) == (0.0, False, True)
        assert "410" in info["error"] and "expired" in info["error"]
        assert info["admissible_actions"] == [] and info["expert_action"] is None
        assert not info["invalid_action"] and "Instruction" not in observation  # no other goal shown
        assert app.num_sessions <= sessions
        with pytest.raises(RuntimeError, match=r"reset\(\)"):
            env.step("click[back to search]")
    finally:
        env.close()
        if server is not None:
            server.stop()


def test_a_flood_of_new_sessions_cannot_push_out_a_live_episode():
    app = WebShopApp(max_sessions=64, max_sessions_per_client=16)
    with WebShopServer(app) as server:
        env = WebShopEnv(backend="http", server_url=server.url)
        flooder = HTTPClient(server.url)
        observation, info = env.reset(options={"task_id": "id-00007"})
        instruction = make_goal("id-00007").instruction
        observations = [observation]
        statuses: dict[int, int] = {}
        for _ in range(4):  # floods between the env's steps: GET and POST starts, unknown ids
            for index in range(25):
                method, query = (
                    ("POST", "?task_id=id-00001") if index % 5 == 0 else ("GET", "?task_id=id-00002")
                )
                if index % 7 == 0:
                    query = ""
                status = flooder.request(method, f"/{uuid.uuid4().hex}{query}").status
                statuses[status] = statuses.get(status, 0) + 1
            observation, reward, terminated, truncated, info = env.step(info["expert_action"])
            observations.append(observation)
            if terminated:
                break
        while not terminated:
            observation, reward, terminated, truncated, info = env.step(info["expert_action"])
            observations.append(observation)
        assert reward == 1.0 and "error" not in info
        assert all(instruction in page for page in observations[:-1])
        assert set(statuses) == {200, 410, 429} and app.num_sessions == 16 + 1
        # the flooder holds its address's quota: told, never evicting anyone
        assert flooder.request("GET", "/one-more?task_id=id-00001").status == 429
        other = WebShopEnv(backend="http", server_url=server.url)  # same address, its own quota
        assert other.reset(seed=0)[1]["page"] == "search"
        other.close()


def test_the_session_quota_is_per_owner_else_per_socket_address_whatever_forwarding_headers_say():
    app = WebShopApp(max_sessions_per_client=3)
    for index in range(3):
        assert _call(app, "GET", f"/a{index}?task_id=id-00001", "10.0.0.1")[0] == 200
    for index, spoof in enumerate(["10.9.9.9", "127.0.0.1", "10.0.0.2"]):
        headers = {"X-Forwarded-For": spoof, "X-Real-IP": spoof, "Forwarded": f"for={spoof}"}
        assert _call(app, "GET", f"/b{index}?task_id=id-00001", "10.0.0.1", headers)[0] == 429
        assert _call(app, "POST", f"/c{index}?task_id=id-00001", "10.0.0.1", headers)[0] == 429
    assert _call(app, "GET", "/a0?task_id=id-00003", "10.0.0.1")[0] == 200  # restarting its own is no new one
    assert _call(app, "GET", "/other?task_id=id-00001", "10.0.0.2")[0] == 200
    assert _call(app, "POST", "/a1/end", "10.0.0.1")[0] == 200
    assert _call(app, "GET", "/a3?task_id=id-00001", "10.0.0.1")[0] == 200
    assert app.num_sessions == 4
    for owner in ("env-one", "env-two"):  # owners on the full address: each its own quota
        for index in range(3):
            assert _call(app, "GET", f"/{owner}-{index}?task_id=id-00001&owner={owner}", "10.0.0.1")[0] == 200
        assert _call(app, "GET", f"/{owner}-9?task_id=id-00001&owner={owner}", "10.0.0.1")[0] == 429
    assert _call(app, "GET", "/x?task_id=id-00001&owner=../etc", "10.0.0.1")[0] == 400


def test_a_full_store_evicts_only_sessions_idle_past_the_ttl():
    app = WebShopApp(max_sessions=4, session_ttl_s=1.0)
    client = InProcessClient(app)

    def start(sid, task):
        return client.request("GET", f"/{sid}?task_id={task}").status

    assert [start("old0", "id-00000"), start("old1", "id-00001")] == [200, 200]
    time.sleep(0.6)
    assert [start("new2", "id-00002"), start("new3", "id-00003")] == [200, 200]
    assert start("late4", "id-00004") == 503  # full of sessions in use: refused, none evicted
    time.sleep(0.6)  # old0, old1 now idle past the ttl; new2, new3 are not
    assert [start("late4", "id-00004"), start("late5", "id-00005"), start("late6", "id-00006")] == [
        200,
        200,
        503,
    ]
    for sid, task in [("new2", "id-00002"), ("new3", "id-00003")]:
        response = client.request("GET", f"/{sid}")
        assert response.status == 200 and make_goal(task).instruction in parse_page(response.html).text
    assert client.request("GET", "/old0").status == 410


@pytest.mark.parametrize("backend", ["inprocess", "http"])
def test_an_env_ends_its_session_on_reset_and_close(backend):
    server = WebShopServer(WebShopApp()).start() if backend == "http" else None
    env = WebShopEnv() if server is None else WebShopEnv(backend="http", server_url=server.url)
    app = shared_app(env.catalog_seed) if server is None else server.app
    before = app.num_sessions
    try:
        for seed in range(10):
            env.reset(seed=seed)
            assert app.num_sessions == before + 1
        env.close()
        assert app.num_sessions == before
    finally:
        if server is not None:
            server.stop()


def _slow_socket(port, payload):
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(payload)
    return sock


def _closed_by_server(sock, timeout):
    """What the server sent before closing (b"" for a bare close), or None if it kept the socket open."""
    sock.settimeout(timeout)
    received = b""
    try:
        while chunk := sock.recv(4096):
            received += chunk
    except ConnectionResetError:
        pass
    except TimeoutError:
        return None
    return received


def test_slow_clients_are_cut_off_and_do_not_starve_real_ones():
    with WebShopServer(WebShopApp(), receive_timeout_s=1.0) as server:
        payloads = [
            b"GET /heal",  # a partial request line
            b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ",  # partial headers
            b"POST /s/buy/B0X HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n\r\nshort",  # slow body
        ]
        slow = [_slow_socket(server.port, payloads[index % 3]) for index in range(200)]
        trickling = [_slow_socket(server.port, b"G") for _ in range(10)]
        opened = time.monotonic()

        started = time.monotonic()
        assert HTTPClient(server.url).request("GET", "/healthz").html == "ok"
        observations, reward, _ = _expert_episode(
            WebShopEnv(backend="http", server_url=server.url), "id-00003"
        )
        assert reward == 1.0 and time.monotonic() - started < 2.0

        # A byte every 0.2 s defeats a per-read timeout; the deadline covers the whole request.
        cut_off = {}
        while trickling and time.monotonic() - opened < 4.0:
            readable, _, _ = select.select(trickling, [], [], 0.2)
            for sock in readable:
                cut_off[sock] = _closed_by_server(sock, 1.0)
                trickling.remove(sock)
            for sock in list(trickling):
                try:
                    sock.sendall(b"E")
                except OSError:  # closed by the server since the select
                    cut_off[sock] = b""
                    trickling.remove(sock)
        assert not trickling and len(cut_off) == 10
        replies = [_closed_by_server(sock, max(0.1, 3.0 - (time.monotonic() - opened))) for sock in slow]
        for sock in slow + list(cut_off):
            sock.close()
        assert time.monotonic() - opened < 3.5
        assert all(reply is not None and reply.startswith(b"HTTP/1.0 408") for reply in replies)
        assert all(reply == b"" or reply.startswith(b"HTTP/1.0 408") for reply in cut_off.values())


def _exchange(port, request):
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(request)
        return _closed_by_server(sock, 3.0).split(b"\r\n")[0]


def test_oversized_or_malformed_requests_are_refused_unread():
    with WebShopServer(WebShopApp()) as server:
        padding = b"".join(b"X-Pad-%d: %s\r\n" % (index, b"a" * 1000) for index in range(90))
        head = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        assert _exchange(server.port, head + padding + b"\r\n").startswith(b"HTTP/1.0 431")
        started = time.monotonic()
        huge_body = b"POST /s/buy/B0X HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000000000\r\n\r\n"
        assert _exchange(server.port, huge_body).startswith(b"HTTP/1.0 413")
        assert time.monotonic() - started < 1.0  # answered without waiting for the body
        negative = b"POST /s/buy/B0X HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: -5\r\n\r\n"
        assert _exchange(server.port, negative).startswith(b"HTTP/1.0 400")
        assert _exchange(server.port, head + b"\r\n").startswith(b"HTTP/1.0 200")


def test_connections_past_the_bound_are_answered_at_once_then_served_again():
    with WebShopServer(WebShopApp(), receive_timeout_s=1.0, max_connections=20) as server:
        held = [_slow_socket(server.port, b"GET /healthz HTTP/1.1\r\n") for _ in range(20)]
        time.sleep(0.2)  # let the server accept them all
        started = time.monotonic()
        with socket.create_connection(("127.0.0.1", server.port)) as extra:
            assert _closed_by_server(extra, 2.0).startswith(b"HTTP/1.0 503")
        assert time.monotonic() - started < 0.5
        for sock in held:
            assert _closed_by_server(sock, 3.0) is not None
            sock.close()
        assert HTTPClient(server.url).request("GET", "/healthz").html == "ok"


def test_many_threads_starting_sessions_never_exceed_the_store():
    app = WebShopApp(max_sessions=50)
    statuses = []

    def shopper(worker):
        client = InProcessClient(app)
        for index in range(20):
            statuses.append(client.request("GET", f"/w{worker}-{index}?task_id=id-00001").status)

    threads = [threading.Thread(target=shopper, args=(worker,)) for worker in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert app.num_sessions == 50 and statuses.count(200) == 50 and statuses.count(503) == 110


def test_an_env_never_closed_ends_its_session_when_collected():
    app = WebShopApp()
    with WebShopServer(app) as server:
        env = WebShopEnv(backend="http", server_url=server.url)
        env.reset(seed=0)
        env.reset(seed=1)
        assert app.num_sessions == 1
        del env
        gc.collect()
        assert app.num_sessions == 0


class _HugeAnswers(http.server.BaseHTTPRequestHandler):
    """An upstream that answers every request with an endless-looking page (256 MiB, streamed)."""

    sent: ClassVar[list[int]] = []

    def do_GET(self):  # noqa: N802 - the stdlib's name
        self.send_response(200)
        self.send_header("Content-Length", str(256 * 2**20))
        self.end_headers()
        sent = 0
        try:
            for _ in range(256):
                self.wfile.write(b"<p>" + b"x" * (2**20 - 3))
                sent += 2**20
        except OSError:
            pass
        self.sent.append(sent)

    def log_message(self, *args):
        pass


def test_an_upstream_answer_over_the_cap_is_refused_without_being_read():
    upstream = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _HugeAnswers)
    thread = threading.Thread(target=upstream.serve_forever, daemon=True)
    thread.start()
    try:
        env = WebShopEnv(backend="http", server_url=f"http://127.0.0.1:{upstream.server_address[1]}")
        with pytest.raises(RuntimeError, match=r"HTTP 502.*over 4194304 bytes"):
            env.reset(seed=0)
        deadline = time.monotonic() + 10
        while not _HugeAnswers.sent and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _HugeAnswers.sent and _HugeAnswers.sent[0] < 32 * 2**20  # the cap plus socket buffers, not 256 MiB
    finally:
        upstream.shutdown()
        upstream.server_close()
