"""LLM policies: HF sampling, the OpenAI client against a real local server, vLLM when installed."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import torch

from regym.agents import HFPolicy, LLMAgent, OpenAIPolicy
from regym.agents.llm import chat_token_ids
from regym.agents.prompts import PromptFormat
from regym.agents.vllm_policy import vllm_available
from regym.envs.base import Outcome, TextEnv
from regym.rollout import rollout
from tiny_chat import tiny_chat_model

torch.set_num_threads(1)
CONVERSATIONS = [
    [{"role": "system", "content": "You are an agent."}, {"role": "user", "content": "Count to 3."}],
    [{"role": "user", "content": "go north"}],
    [{"role": "user", "content": "look at the quick brown fox and then open the door"}],
]


@pytest.fixture(scope="module")
def tiny():
    return tiny_chat_model(seed=1)


def test_hf_policy_batched_sampling_matches_one_at_a_time_and_forward_logprobs(tiny):
    model, tokenizer = tiny
    batched = HFPolicy(model, tokenizer, temperature=0, max_new_tokens=8).chat(CONVERSATIONS)
    single = [HFPolicy(model, tokenizer, temperature=0, max_new_tokens=8).chat([c])[0] for c in CONVERSATIONS]
    assert [g.token_ids for g in batched] == [g.token_ids for g in single]  # left padding changes nothing
    for conversation, generation in zip(CONVERSATIONS, batched, strict=True):
        prompt = chat_token_ids(tokenizer, conversation)
        ids = torch.tensor([prompt + generation.token_ids])
        with torch.no_grad():
            logprobs = torch.log_softmax(model(ids).logits[0].float(), -1)[len(prompt) - 1:-1]
        fresh = logprobs.gather(-1, ids[0, len(prompt):, None])[:, 0]
        assert torch.allclose(fresh, torch.tensor(generation.logprobs), atol=1e-4)
        assert generation.text == tokenizer.decode(generation.token_ids, skip_special_tokens=True)
        assert generation.finish_reason in ("stop", "length") and len(generation.token_ids) <= 8


def test_hf_policy_seed_reproduces_and_stops_at_end_of_turn(tiny):
    model, tokenizer = tiny
    first = HFPolicy(model, tokenizer, seed=5, max_new_tokens=12).chat(CONVERSATIONS)
    again = HFPolicy(model, tokenizer, seed=5, max_new_tokens=12).chat(CONVERSATIONS)
    assert [g.token_ids for g in first] == [g.token_ids for g in again]
    # Make the end-of-turn token overwhelmingly likely: every reply stops after one token.
    end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    bias = torch.zeros(len(tokenizer))
    bias[end] = 50.0
    handle = model.lm_head.register_forward_hook(lambda module, inputs, output: output + bias)
    try:
        stopped = HFPolicy(model, tokenizer, seed=0, max_new_tokens=12).chat(CONVERSATIONS)
    finally:
        handle.remove()
    assert all(g.token_ids == [end] and g.finish_reason == "stop" and g.text == "" for g in stopped)


def test_hf_policy_top_p_keeps_sampling_inside_the_nucleus(tiny):
    model, tokenizer = tiny
    greedy = HFPolicy(model, tokenizer, temperature=0, max_new_tokens=1).chat(CONVERSATIONS)
    nucleus = HFPolicy(model, tokenizer, temperature=1.0, top_p=1e-6, max_new_tokens=1, seed=0).chat(CONVERSATIONS)
    assert [g.token_ids for g in nucleus] == [g.token_ids for g in greedy]


class SayDoorGame(TextEnv):
    """Asks for the word "door" every turn (long observations, to test history truncation); four turns."""

    instructions = "Repeat the word you are shown."

    def _task_id_for(self, rng):
        return f"echo-{int(rng.integers(0, 3))}"

    def _begin(self, task_id):
        self.turns = 0
        return Outcome("Say the word door. " * 3, info={"admissible_actions": ["door", "key"]})

    def _act(self, action):
        self.turns += 1
        return Outcome("Again: say door. " * 3, terminated=self.turns >= 4, won=action == "door",
                       info={"admissible_actions": ["door", "key"]})


def test_llm_agent_plays_episodes_and_truncates_history(tiny):
    model, tokenizer = tiny
    policy = HFPolicy(model, tokenizer, seed=0, max_new_tokens=4)
    agent = LLMAgent(policy, PromptFormat(style="react"), max_context_tokens=120)
    seen = []
    original = policy.chat

    def recording_chat(conversations):
        seen.extend(conversations)
        return original(conversations)

    policy.chat = recording_chat
    trajectories = rollout([SayDoorGame(max_turns=6), SayDoorGame(max_turns=6)], agent, episodes=3)
    assert all(t.num_turns == 4 and t.error is None and t.agent == agent.name for t in trajectories)
    assert all(messages[0]["role"] == "system" and "Thought" in messages[0]["content"] for messages in seen)
    assert "Available actions: door, key" in seen[0][1]["content"]
    long = [m for m in seen if len(chat_token_ids(tokenizer, m)) > 120]
    assert all(len(m) <= 5 for m in long)  # only system, first exchange and the current observation remain
    assert max(len(m) for m in seen) < 1 + 2 * 4  # some history was dropped
    with pytest.raises(ValueError, match="tokenizer"):
        LLMAgent(OpenAIPolicy("x", base_url="http://127.0.0.1:9/v1"), max_context_tokens=10)


class ChatCompletionsHandler(BaseHTTPRequestHandler):
    """A real OpenAI-compatible /v1/chat/completions endpoint serving an HFPolicy."""

    policy = None
    requests = []

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).requests.append(body)
        if self.path != "/v1/chat/completions":
            self.send_error(404)
            return
        policy = self.policy
        policy.max_new_tokens = body.get("max_tokens") or policy.max_new_tokens
        generation = policy.chat([body["messages"]])[0]
        logprobs = None
        if body.get("logprobs"):
            tokens = [policy.tokenizer.decode([i]) for i in generation.token_ids]
            logprobs = {"content": [{"token": t, "logprob": lp, "bytes": None, "top_logprobs": []}
                                    for t, lp in zip(tokens, generation.logprobs, strict=True)]}
        payload = {
            "id": "chatcmpl-test", "object": "chat.completion", "created": 0, "model": body["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": generation.text},
                         "logprobs": logprobs, "finish_reason": generation.finish_reason}],
            "usage": {"prompt_tokens": 0, "completion_tokens": len(generation.token_ids), "total_tokens": 0},
        }
        data = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def test_openai_policy_talks_to_a_real_local_server(tiny):
    model, tokenizer = tiny
    served = HFPolicy(model, tokenizer, temperature=0, max_new_tokens=6)
    ChatCompletionsHandler.policy = served
    ChatCompletionsHandler.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), ChatCompletionsHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        client = OpenAIPolicy("tiny", base_url=f"http://127.0.0.1:{server.server_port}/v1", api_key="k",
                              temperature=0, max_new_tokens=6, logprobs=True, max_workers=1)
        replies = client.chat(CONVERSATIONS)
        local = HFPolicy(model, tokenizer, temperature=0, max_new_tokens=6).chat(CONVERSATIONS)
        assert [r.text for r in replies] == [g.text for g in local]
        assert all(r.logprobs == pytest.approx(g.logprobs, abs=1e-5) for r, g in zip(replies, local, strict=True))
        assert ChatCompletionsHandler.requests[0]["messages"] == CONVERSATIONS[0]
        assert ChatCompletionsHandler.requests[0]["max_tokens"] == 6
        trajectories = rollout(SayDoorGame(max_turns=2), LLMAgent(client), episodes=2)
        assert all(t.num_turns == 2 and t.error is None for t in trajectories)
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.skipif(not vllm_available(), reason="vllm is not installed")
def test_vllm_policy_generates_with_logprobs(tmp_path, tiny):
    from regym.agents import VLLMPolicy

    model, tokenizer = tiny
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    policy = VLLMPolicy(tmp_path, temperature=0, max_new_tokens=6, seed=0, enforce_eager=True)
    replies = policy.chat(CONVERSATIONS)
    local = HFPolicy(model, tokenizer, temperature=0, max_new_tokens=6).chat(CONVERSATIONS)
    assert [r.token_ids for r in replies] == [g.token_ids for g in local]
    assert all(len(r.logprobs) == len(r.token_ids) for r in replies)


def test_vllm_policy_without_vllm_says_how_to_install():
    if vllm_available():
        pytest.skip("vllm is installed")
    from regym.agents import VLLMPolicy

    with pytest.raises(ImportError, match="regym\\[vllm\\]"):
        VLLMPolicy("anything")


def test_import_regym_stays_light():
    import subprocess
    import sys

    code = "import sys, regym, regym.agents; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"
