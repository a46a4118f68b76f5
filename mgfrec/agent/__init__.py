"""The recommendation agent: prompts, the tag parser and format rule, trajectories, the environment step.

One module per concept (see docs/agent.md for the whole loop):

* :mod:`~mgfrec.text.prompts`: versioned template files (``templates/``), chat messages, the user agent's
  prompt.
* :mod:`~mgfrec.text.neutralize`: how untrusted text (titles, feedback) is made inert.
* :mod:`~mgfrec.agent.parser`: the format rule, :func:`parse_turn`, :func:`parse_transcript`.
* :mod:`~mgfrec.agent.state`: :class:`AgentState`, the per-trajectory limits and end reasons.
* :mod:`~mgfrec.agent.observation`: the ``<item_list>``/``<feedback>`` text after a grounding.
* :mod:`~mgfrec.agent.trajectory`: token-exact trajectories, action masks, log-probs.
* :mod:`~mgfrec.agent.environment`: batched grounding and user-agent feedback for a step.
* :mod:`~mgfrec.agent.batching`: trajectories as padded tensors for the loss.
* :mod:`~mgfrec.agent.final_ranking`: the answer's full-ranking rank and the reward input.
* :mod:`~mgfrec.agent.loop`: the multi-turn agent loop, an engine's turns -> token-exact trajectories.
* :mod:`~mgfrec.agent.samples`: the samples the agent sees, with their recall lists.

Only the torch-free text modules are imported here; import the rest from their modules.
"""

from mgfrec.agent.observation import render_observation
from mgfrec.agent.parser import STOP_STRINGS, TranscriptCheck, Turn, parse_transcript, parse_turn
from mgfrec.agent.state import END_REASONS, AgentState, EndReason
from mgfrec.agent.trajectory import EnvironmentSegment, GroundingStep, PolicySegment, Trajectory
from mgfrec.text.neutralize import neutralize, neutralize_title, reserved_strings
from mgfrec.text.prompts import AgentPrompts, Template, build_messages, encode_prompt, load_template, user_agent_prompt

__all__ = [
    "END_REASONS",
    "STOP_STRINGS",
    "AgentPrompts",
    "AgentState",
    "EndReason",
    "EnvironmentSegment",
    "GroundingStep",
    "PolicySegment",
    "Template",
    "TranscriptCheck",
    "Trajectory",
    "Turn",
    "build_messages",
    "encode_prompt",
    "load_template",
    "neutralize",
    "neutralize_title",
    "parse_transcript",
    "parse_turn",
    "render_observation",
    "reserved_strings",
    "user_agent_prompt",
]
