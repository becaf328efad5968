"""orb-learning as an MCP server (``orb-learning mcp``): the learning store's search, route
recommendations, analytics, statistics and feedback as tools an agent calls before and
after a task. Built on the official ``mcp`` SDK (2.x); see docs/mcp.md.

- :mod:`.server`: the server, its transports, and how failures reach the agent;
- :mod:`.tools`: the tools, thin calls of :class:`~orb_learning.LearningDatabase` and
  :mod:`orb_learning.statistics`;
- :mod:`.outputs`: what they return (their output schemas).

Nothing is imported here, so that ``import orb_learning.mcp_tools`` costs nothing.
"""
