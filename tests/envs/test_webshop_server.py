"""The WebShop site over real HTTP: same pages as in-process, isolated sessions, the CLI, a browser."""

import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import numpy as np
import pytest

from regym.envs.webshop import (
    HTTPClient,
    InProcessClient,
    WebShopApp,
    WebShopEnv,
    WebShopServer,
    shared_server,
)
from regym.envs.webshop.browser import browser_unavailable_reason
from regym.envs.webshop.instructions import make_goal
from regym.envs.webshop.text import parse_page


def _play(env, seed, rng):
    """A mixed episode (expert moves with random detours); returns every (observation, reward, info)."""
    observation, info = env.reset(seed=seed)
    seen = [(observation, 0.0, info)]
    for _ in range(env.max_turns):
        actions = info["admissible_actions"]
        action = info["expert_action"] if rng.random() < 0.6 else actions[rng.integers(len(actions))]
        observation, reward, terminated, truncated, info = env.step(action)
        seen.append((observation, reward, info))
        if terminated or truncated:
            break
    return seen


def test_http_and_inprocess_give_identical_episodes():
    local, remote = WebShopEnv(), WebShopEnv(backend="http")
    for seed in range(6):
        assert _play(local, seed, np.random.default_rng(seed)) == _play(
            remote, seed, np.random.default_rng(seed)
        )


def test_32_concurrent_episodes_on_one_server_do_not_cross_talk():
    server = shared_server()
    barrier = threading.Barrier(32)
    results, errors = {}, []

    def shopper(index):
        try:
            env = WebShopEnv(backend="http", server_url=server.url)
            task_id = f"id-{index:05d}"
            observation, info = env.reset(options={"task_id": task_id})
            instruction = make_goal(task_id).instruction
            barrier.wait(timeout=60)
            pages = [observation]
            while True:
                observation, reward, terminated, truncated, info = env.step(info["expert_action"])
                pages.append(observation)
                if terminated or truncated:
                    break
            assert all(instruction in page for page in pages[:-1])
            results[index] = (reward, info["purchased_asin"], env.page.text)
        except Exception as error:  # reported below with its index
            errors.append((index, repr(error)))

    threads = [threading.Thread(target=shopper, args=(i,)) for i in range(32)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    assert len(results) == 32
    for index, (reward, asin, done_text) in results.items():
        goal = make_goal(f"id-{index:05d}")
        assert reward == 1.0
        assert f"asin [SEP] {asin}" in done_text
        assert json.dumps(goal.options) in done_text  # this session's own options, not a neighbour's


def test_interleaved_sessions_on_the_same_product_keep_their_own_options():
    with WebShopServer(WebShopApp()) as server:
        client = HTTPClient(server.url)
        goal = make_goal("id-00001")
        name, values = next(iter(server.app.catalog.get(goal.asin).options.items()))
        for sid in ("alice", "bob"):
            assert client.request("GET", f"/{sid}?task_id=id-00001").status == 200
            client.request("GET", f"/{sid}/item/{goal.asin}")
        client.request(
            "GET", f"/alice/item/{goal.asin}/option?name={name}&value={values[0]}".replace(" ", "+")
        )
        client.request("GET", f"/bob/item/{goal.asin}/option?name={name}&value={values[1]}".replace(" ", "+"))
        alice = parse_page(client.request("POST", f"/alice/buy/{goal.asin}").html)
        bob = parse_page(client.request("POST", f"/bob/buy/{goal.asin}").html)
        assert json.dumps({name: values[0]}) in alice.text and json.dumps({name: values[1]}) in bob.text
        assert server.app.num_sessions == 2


def test_bad_requests_get_error_pages_not_crashes():
    app = WebShopApp()
    client = InProcessClient(app)
    assert client.request("GET", "/healthz").html == "ok"
    assert client.request("GET", "/").status == 200
    assert client.request("GET", "/s?task_id=nonsense").status == 400
    assert client.request("GET", "/s?task_id=id-00000").status == 200
    assert client.request("GET", "/s/item/B0NOSUCH00").status == 404
    assert client.request("GET", "/s/search?q=").status == 400
    assert client.request("GET", "/s/search?q=lamp&page=x").status == 400
    asin = app.catalog.products[0].asin
    assert client.request("GET", f"/s/buy/{asin}").status == 405
    assert client.request("GET", f"/s/item/{asin}/option?name=color&value=plaid").status == 400
    assert client.request("GET", "/bad%20id!").status == 400
    assert client.request("GET", "/bad%20id!?task_id=id-00000").status == 400
    assert client.request("GET", "/s/end").status == 405


def test_session_store_is_bounded_and_refuses_rather_than_evicts_live_sessions():
    app = WebShopApp(max_sessions=5)
    client = InProcessClient(app)
    statuses = [client.request("GET", f"/s{index}?task_id=id-{index:05d}").status for index in range(12)]
    assert statuses == [200] * 5 + [503] * 7
    assert app.num_sessions == 5
    for index in range(5):  # every live session still plays its own goal
        page = parse_page(client.request("GET", f"/s{index}").html)
        assert make_goal(f"id-{index:05d}").instruction in page.text


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_serve_web_command_serves_the_shop():
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "regym.cli.main", "serve-web", "--port", str(port), "--receive-timeout", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        deadline = time.time() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
                    assert response.read() == b"ok"
                break
            except (urllib.error.URLError, ConnectionError):
                assert process.poll() is None and time.time() < deadline, "server did not come up"
                time.sleep(0.3)
        env = WebShopEnv(backend="http", server_url=f"http://127.0.0.1:{port}")
        _, info = env.reset(seed=4)
        for _ in range(10):
            _, reward, terminated, _, info = env.step(info["expert_action"])
            if terminated:
                break
        assert reward == 1.0
        with socket.create_connection(("127.0.0.1", port)) as slow:  # --receive-timeout reached the server
            slow.sendall(b"GET /healthz HTTP/1.1\r\n")
            slow.settimeout(5)
            assert slow.recv(100).startswith(b"HTTP/1.0 408")
    finally:
        process.terminate()
        process.wait(timeout=10)


BROWSER_MISSING = browser_unavailable_reason()


@pytest.mark.skipif(BROWSER_MISSING is not None, reason=f"browser backend: {BROWSER_MISSING}")
def test_browser_backend_sees_the_same_shop_through_the_accessibility_tree():
    browser, local = WebShopEnv(backend="browser"), WebShopEnv()
    try:
        observation, info = browser.reset(seed=2)
        expected, _ = local.reset(seed=2)
        assert observation == expected
        for _ in range(10):
            action = info["expert_action"]
            observation, reward, terminated, _, info = browser.step(action)
            expected = local.step(action)[0]
            assert observation == expected
            if terminated:
                break
        assert reward == 1.0 and info["success"]
    finally:
        browser.close()
