"""regym/WebShop-v0: catalog, instructions, search, reward, pages and the env (in-process)."""

import gymnasium as gym
import pytest
from gymnasium.utils.env_checker import check_env

from regym.agents import ExpertAgent, RandomAgent
from regym.envs.webshop import WebShopEnv, shared_app
from regym.envs.webshop.catalog import OOD_CATEGORIES, Product, build_catalog
from regym.envs.webshop.instructions import Goal, held_out_pair, make_goal, parse_task_id, task_ids
from regym.envs.webshop.reward import can_fully_satisfy, get_reward
from regym.envs.webshop.search import SearchEngine
from regym.envs.webshop.text import parse_page
from regym.rollout import rollout


def _jacket(**changes) -> Product:
    fields = dict(
        asin="B0TEST0001",
        title="Acme Waterproof Hooded Rain Jacket for men",
        category="outerwear",
        product_type="rain jacket",
        attributes=("waterproof", "hooded", "packable"),
        options={"color": ("blue", "red"), "size": ("s", "m", "l")},
        price=49.99,
        rating=4.5,
        features=("Waterproof: tested to last",),
        description="A jacket.",
        reviews=(),
    )
    fields.update(changes)
    return Product(**fields)


GOAL = Goal(
    task_id="id-99999",
    asin="B0TEST0001",
    category="outerwear",
    product_type="rain jacket",
    attributes=("waterproof", "hooded"),
    options={"color": "blue", "size": "m"},
    price_upper=60.0,
    instruction="i need a waterproof and hooded rain jacket with color: blue, and size: m, and price lower than 60",
)


def test_reward_full_match_is_one():
    breakdown = get_reward(_jacket(), GOAL, {"color": "blue", "size": "m"})
    assert breakdown.total == 1.0 and breakdown.r_type == 1.0
    assert can_fully_satisfy(_jacket(), GOAL)


def test_reward_partial_matches_are_fractions_of_the_goal():
    # 2 attributes + 2 options + price = 5 parts, each worth 1/5 (WebShop's get_reward)
    assert get_reward(_jacket(), GOAL, {"color": "red", "size": "m"}).total == pytest.approx(4 / 5)
    assert get_reward(_jacket(), GOAL, {}).total == pytest.approx(3 / 5)
    assert get_reward(_jacket(price=79.99), GOAL, GOAL.options).total == pytest.approx(4 / 5)
    one_attribute = _jacket(title="Acme Hooded Rain Jacket", attributes=("hooded", "packable"), features=())
    breakdown = get_reward(one_attribute, GOAL, GOAL.options)
    assert breakdown.attributes_matched == 1 and breakdown.total == pytest.approx(4 / 5)
    assert not can_fully_satisfy(one_attribute, GOAL)


def test_reward_type_mismatch_scales_everything_down():
    lamp = _jacket(title="Acme Waterproof Hooded Desk Lamp", category="lighting", product_type="desk lamp")
    assert get_reward(lamp, GOAL, GOAL.options).total == 0.0
    softshell = _jacket(title="Acme Waterproof Hooded Softshell Jacket", product_type="softshell jacket")
    breakdown = get_reward(softshell, GOAL, GOAL.options)  # same category, half the type words: r_type 1
    assert breakdown.r_type == 1.0 and breakdown.title_score == 0.5


def test_catalog_is_deterministic_and_sized():
    first = build_catalog.__wrapped__(2022)
    second = build_catalog.__wrapped__(2022)
    assert first.products == second.products and 1000 <= len(first) <= 2000
    assert len({p.asin for p in first.products}) == len(first)
    assert build_catalog.__wrapped__(7).products != first.products


def test_splits_are_disjoint_and_documented_axes_hold():
    for task_id in task_ids("in_distribution")[:300]:
        goal = make_goal(task_id)
        assert goal.category not in OOD_CATEGORIES
        assert not any(
            held_out_pair(goal.category, a, b) for a in goal.attributes for b in goal.attributes if a < b
        )
    ood = [make_goal(t) for t in task_ids("out_of_distribution")[:300]]
    unseen = [g for g in ood if g.category in OOD_CATEGORIES]
    assert 0 < len(unseen) < len(ood)  # both axes: unseen categories and unseen attribute pairs
    for goal in ood:
        if goal.category not in OOD_CATEGORIES:
            assert any(
                held_out_pair(goal.category, a, b) for a in goal.attributes for b in goal.attributes if a < b
            )
    assert make_goal("id-00042") == make_goal("id-00042") and parse_task_id("ood-00007") == (
        "out_of_distribution",
        7,
    )
    with pytest.raises(ValueError):
        parse_task_id("webshop-1")


def test_bm25_search_ranks_title_matches_first():
    catalog = build_catalog()
    engine = SearchEngine(catalog)
    target = catalog.products[123]
    results = engine.search(target.title.lower())
    assert results[0].asin == target.asin and len(results) <= 50
    assert engine.search("jackets") and all("jacket" in p.product_type for p in engine.search("jackets")[:10])
    assert engine.search("qwertyuiop") == []
    assert [p.asin for p in engine.search("waterproof rain jacket")] == [
        p.asin for p in engine.search("waterproof rain jacket")
    ]


def test_pages_render_webshop_simple_text():
    app = shared_app()
    html = app.route("GET", "/page-test", {"task_id": "id-00003"})
    goal = make_goal("id-00003")
    page = parse_page(html)
    assert page.text == f"WebShop [SEP] Instruction: [SEP] {goal.instruction} [SEP] Search"
    assert page.has_search_bar and page.clickables == {}
    results = parse_page(app.route("GET", "/page-test/search", {"q": goal.search_query}))
    assert results.text.startswith(
        f"Instruction: [SEP] {goal.instruction} [SEP] Back to Search [SEP] Page 1 (Total"
    )
    assert "next >" in results.clickables and results.asins[0].lower() in results.clickables
    item = parse_page(app.route("GET", f"/page-test/item/{goal.asin}", {}))
    assert item.text.endswith("[SEP] Description [SEP] Features [SEP] Reviews [SEP] Buy Now")
    assert item.clickables["buy now"].method == "POST" and "< prev" in item.clickables


def test_check_env_and_gym_make():
    check_env(WebShopEnv(), skip_render_check=True)
    env = gym.make("regym/WebShop-v0")
    observation, info = env.reset(seed=3)
    assert observation.startswith("WebShop [SEP] Instruction:") and info["expert_action"].startswith(
        "search["
    )
    assert env.unwrapped.max_turns == 15
    assert WebShopEnv(split="ood").reset(seed=0)[1]["task_id"].startswith("ood-")


def test_same_seed_same_episode():
    env = WebShopEnv()
    first = env.reset(seed=11)
    step = env.step(first[1]["expert_action"])
    assert env.reset(seed=11) == first and env.step(first[1]["expert_action"]) == step
    assert env.reset(seed=12)[0] != first[0]


def test_expert_succeeds_on_id_and_ood_and_random_does_not():
    for split in ("in_distribution", "out_of_distribution"):
        envs = [WebShopEnv(split=split) for _ in range(4)]
        expert = rollout(envs, ExpertAgent(), episodes=60)
        assert sum(t.success for t in expert) / len(expert) >= 0.95, split
        assert all(t.total_reward == 1.0 for t in expert if t.success)
    randoms = rollout([WebShopEnv() for _ in range(4)], RandomAgent(seed=0), episodes=60)
    assert sum(t.success for t in randoms) <= 1
    assert all(0.0 <= t.total_reward <= 1.0 for t in randoms)


def test_expert_recovers_from_a_wrong_product_and_wrong_options():
    env = WebShopEnv()
    _, info = env.reset(options={"task_id": "id-00010"})
    _, _, _, _, info = env.step(info["expert_action"])  # search
    wrong = next(a for a in env.page.asins if not can_fully_satisfy(env.catalog.get(a), env.goal))
    _, _, _, _, info = env.step(f"click[{wrong}]")
    assert info["expert_action"] == "click[< prev]"
    _, _, _, _, info = env.step(info["expert_action"])
    _, _, _, _, info = env.step(info["expert_action"])  # the right product
    product = env.catalog.get(env.page.item_asin)
    name, wanted = next(iter(env.goal.options.items()))
    other = next(v for v in product.options[name] if v != wanted)
    _, _, _, _, info = env.step(f"click[{other}]")
    assert env.page.selected_options == {name: other} and info["expert_action"] == f"click[{wanted}]"
    for _ in range(8):
        _, reward, terminated, _, info = env.step(info["expert_action"])
        if terminated:
            break
    assert terminated and reward == 1.0 and info["success"]


def test_invalid_actions_keep_the_page_and_flag_it():
    env = WebShopEnv(invalid_action_penalty=0.1)
    observation, info = env.reset(seed=0)
    for bad in ("click[buy now]", "jump around", "search[]"):
        text, reward, terminated, truncated, step_info = env.step(bad)
        assert step_info["invalid_action"] and reward == -0.1 and not terminated
        assert text.startswith("Invalid action:") and text.endswith(observation)
    env.step(info["expert_action"])
    _, _, _, _, step_info = env.step("search[anything]")  # no search bar on the results page
    assert step_info["invalid_action"] and step_info["page"] == "results"


def test_buying_ends_the_episode_and_truncation_at_max_turns():
    env = WebShopEnv(max_turns=3)
    _, info = env.reset(seed=5)
    _, _, _, _, info = env.step(info["expert_action"])
    _, _, terminated, truncated, _ = env.step("click[back to search]")
    _, _, terminated, truncated, _ = env.step("click[back to search]")
    assert truncated and not terminated
    with pytest.raises(RuntimeError):
        env.step("click[back to search]")
    env = WebShopEnv()
    _, info = env.reset(seed=5)
    _, _, _, _, info = env.step(info["expert_action"])
    _, _, _, _, info = env.step(info["expert_action"])  # an item page
    _, reward, terminated, _, info = env.step("click[buy now]")  # no options chosen: partial reward
    assert terminated and 0.0 < reward < 1.0 and not info["success"] and info["page"] == "done"
