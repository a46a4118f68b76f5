"""The text every model reads: prompt templates and how untrusted text is made inert.

* ``prompts``     versioned template files (``templates/``), the agent's chat messages, the user agent's
  prompt.
* ``neutralize``  titles and feedback made safe to place in a conversation (no tag, no special token).

Both the agent (:mod:`mgfrec.agent`) and the user agents (:mod:`mgfrec.user_agents`) build on this
package, so it sits below both; ``mgfrec.agent.prompts`` and ``mgfrec.agent.neutralize`` re-export it from
the old paths.
"""
