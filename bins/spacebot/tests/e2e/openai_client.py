"""The official `openai` Python package as a third-party client of the daemon's OpenAI API.

Run by `openai_api.rs` against the real binary and the fake model, with OPENAI_BASE_URL,
OPENAI_API_KEY and SPACEBOT_AGENT set. Prints one line per check; any failure raises.
"""

import os

import openai

agent = os.environ["SPACEBOT_AGENT"]
client = openai.OpenAI()  # reads OPENAI_BASE_URL and OPENAI_API_KEY

# A plain call.
answer = client.chat.completions.create(
    model=agent, user="py", messages=[{"role": "user", "content": "alpha-remember this"}]
)
text = answer.choices[0].message.content
assert answer.model == agent, answer
assert answer.choices[0].finish_reason == "stop", answer
assert "alpha-remember this" in text, text
print("plain:", text)

# The second turn of the same conversation: the agent kept the first.
answer = client.chat.completions.create(
    model=agent, user="py", messages=[{"role": "user", "content": "what did I say first?"}]
)
text = answer.choices[0].message.content
assert "alpha-remember this" in text and "what did I say first?" in text, text
print("remembers:", text)

# A streamed call arrives as several chunks.
chunks = list(
    client.chat.completions.create(
        model=agent, user="py-stream", stream=True, messages=[{"role": "user", "content": "stream please"}]
    )
)
assert len(chunks) >= 3, chunks
assert chunks[0].choices[0].delta.role == "assistant", chunks[0]
streamed = "".join(chunk.choices[0].delta.content or "" for chunk in chunks)
assert "stream please" in streamed, streamed
assert chunks[-1].choices[0].finish_reason == "stop", chunks[-1]
print("streamed:", len(chunks), "chunks:", streamed)

# The models are the agents.
assert agent in [model.id for model in client.models.list()]

# A model that isn't an agent.
try:
    client.chat.completions.create(model="no-such-agent", messages=[{"role": "user", "content": "hi"}])
    raise AssertionError("an unknown model was accepted")
except openai.NotFoundError as error:
    assert "no-such-agent" in str(error), error
    print("unknown model:", error)

# A wrong key.
try:
    openai.OpenAI(api_key="wrong").chat.completions.create(
        model=agent, messages=[{"role": "user", "content": "hi"}]
    )
    raise AssertionError("a wrong key was accepted")
except openai.AuthenticationError as error:
    print("wrong key:", error)

print("all checks passed")
